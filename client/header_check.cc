// Compiles <meshd/client.h> and <meshd/client_c.h> alone, as C++17 (see CMakeLists.txt).
#include "meshd/client.h"
#include "meshd/client_c.h"
