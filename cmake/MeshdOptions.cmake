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
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # gRPC's header code is not instrumented (tests/tsan/ignorelist.txt says why; GCC has no such
    # list). ccache does not read the list: its hash, as a definition, makes a changed list
    # rebuild everything.
    set(MESHD_TSAN_IGNORELIST ${PROJECT_SOURCE_DIR}/tests/tsan/ignorelist.txt)
    file(MD5 ${MESHD_TSAN_IGNORELIST} MESHD_TSAN_IGNORELIST_MD5)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${MESHD_TSAN_IGNORELIST})
    target_compile_options(meshd_build_flags INTERFACE
                           -fsanitize-ignorelist=${MESHD_TSAN_IGNORELIST})
    target_compile_definitions(meshd_build_flags INTERFACE
                               MESHD_TSAN_IGNORELIST=${MESHD_TSAN_IGNORELIST_MD5})
  endif()
endif()
# MESHD_FUZZ: the libFuzzer targets under tests/fuzz, built with clang in their own build folder
# (scripts/fuzz.sh). Everything is compiled with libFuzzer's coverage hooks and ASan+UBSan; only
# the fuzzers themselves link libFuzzer's main.
if(MESHD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MESHD_FUZZ needs clang (CXX=clang++): libFuzzer is clang's.")
  endif()
  if(MESHD_SANITIZE OR MESHD_TSAN)
    message(FATAL_ERROR "MESHD_FUZZ already builds with ASan+UBSan; leave MESHD_SANITIZE and MESHD_TSAN off.")
  endif()
  target_compile_options(meshd_build_flags INTERFACE -fsanitize=fuzzer-no-link,address,undefined
                         -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(meshd_build_flags INTERFACE -fsanitize=address,undefined)
endif()
# Full RELRO (Debian's "bindnow" hardening): each binary's imported symbols are bound when it
# starts and its table of them is made read-only, instead of being looked up on first use in the
# middle of serving (libraries Debian built without it still bind theirs lazily).
target_link_options(meshd_build_flags INTERFACE LINKER:-z,relro,-z,now)
