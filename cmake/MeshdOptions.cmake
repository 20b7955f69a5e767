# Compiler flags shared by every meshd target: warnings, sanitizers, ccache.

find_program(MESHD_CCACHE ccache)
if(MESHD_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${MESHD_CCACHE})
endif()

if(MESHD_SANITIZE AND MESHD_TSAN)
  message(FATAL_ERROR "MESHD_SANITIZE (ASan+UBSan) and MESHD_TSAN cannot be combined; pick one.")
endif()

add_library(meshd_build_flags INTERFACE)
target_compile_options(meshd_build_flags INTERFACE -Wall -Wextra -Wpedantic -Wshadow
                       -Wnon-virtual-dtor -Wimplicit-fallthrough)
if(MESHD_WERROR)
  target_compile_options(meshd_build_flags INTERFACE -Werror)
endif()
if(MESHD_SANITIZE)
  target_compile_options(meshd_build_flags INTERFACE -fsanitize=address,undefined
                         -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(meshd_build_flags INTERFACE -fsanitize=address,undefined)
endif()
if(MESHD_TSAN)
  target_compile_options(meshd_build_flags INTERFACE -fsanitize=thread -fno-omit-frame-pointer)
  target_link_options(meshd_build_flags INTERFACE -fsanitize=thread)
endif()
# Full RELRO (Debian's "bindnow" hardening): each binary's imported symbols are bound when it
# starts and its table of them is made read-only, instead of being looked up on first use in the
# middle of serving (libraries Debian built without it still bind theirs lazily).
target_link_options(meshd_build_flags INTERFACE LINKER:-z,relro,-z,now)
