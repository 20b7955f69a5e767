/* Compiles <meshd/client_c.h> alone, as C. */
#include "meshd/client_c.h"
