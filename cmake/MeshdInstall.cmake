# `cmake --install <build> [--prefix P] [--component C]`: what goes where (GNUInstallDirs).
#
#   component runtime   P/bin/meshd, P/bin/meshctl (daemon/main), the systemd units in
#                       P/lib/systemd/system (ExecStart pointing at P/bin/meshd), the sysusers file
#                       as P/lib/sysusers.d/meshd.conf, and P/share/doc/meshd/meshd.env.example
#   component client    P/lib/libmeshd_client.so, P/include/meshd/{client.h,client_c.h}, and for
#                       consumers P/lib/pkgconfig/meshd-client.pc and P/lib/cmake/meshd/ (the CMake
#                       package: find_package(meshd CONFIG) gives meshd::client) (client/)
#   component python    the built package build/python/meshd in P/${MESHD_PYTHON_INSTALL_DIR}
#                       (python/; only with MESHD_BUILD_PYTHON)
#
# P is chosen at install time (--prefix), so the files that name it (the .pc file, the units'
# ExecStart) are written by the install step itself: see cmake/MeshdInstallText.cmake.
# tests/install installs a build into a temporary prefix and builds consumers against it.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MESHD_PYTHON_INSTALL_DIR "lib/python3/dist-packages" CACHE STRING
    "Where the meshd Python package is installed, relative to the prefix (Debian's layout; Debian's \
python3 searches /usr/lib/python3/dist-packages and /usr/local/lib/python3.X/dist-packages)")
set(MESHD_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd units are installed, relative to the prefix")
set(MESHD_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING
    "Where the systemd-sysusers file is installed, relative to the prefix")
set(MESHD_CMAKE_PACKAGE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/meshd")

# meshd_install_full_dir(<var> <dir>): <dir> as an absolute path for install-time code — itself when
# absolute, else "${CMAKE_INSTALL_PREFIX}/<dir>" left for the install step to expand.
function(meshd_install_full_dir var dir)
  if(IS_ABSOLUTE "${dir}")
    set(${var} "${dir}" PARENT_SCOPE)
  else()
    set(${var} "\${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

# meshd_install_text(<source> <destination> <name> COMPONENT <c> [CONFIGURE] [REPLACE <from> <to>]...)
# Installs <source> as <destination>/<name>, edited by the install step: CONFIGURE replaces @prefix@
# by this install's prefix, and each <from> is replaced by <to>, which may name that prefix as
# "\${CMAKE_INSTALL_PREFIX}" (see meshd_install_full_dir).
function(meshd_install_text source destination name)
  cmake_parse_arguments(PARSE_ARGV 3 T "CONFIGURE" "COMPONENT" "REPLACE")
  set(args "")
  if(T_CONFIGURE)
    string(APPEND args " CONFIGURE")
  endif()
  if(T_REPLACE)
    string(APPEND args " REPLACE")
    foreach(r IN LISTS T_REPLACE)
      string(APPEND args " \"${r}\"")
    endforeach()
  endif()
  install(CODE "include(\"${PROJECT_SOURCE_DIR}/cmake/MeshdInstallText.cmake\")
meshd_install_text_now(\"${source}\" \"${destination}\" \"${name}\" \
\"${CMAKE_BINARY_DIR}/CMakeFiles/meshd-install\"${args})" COMPONENT ${T_COMPONENT})
endfunction()

# --- runtime: the systemd units (meshd and meshctl are installed by daemon/main) ---
# The units start /usr/local/bin/meshd; the installed copies start this install's meshd.
meshd_install_full_dir(meshd_full_bindir ${CMAKE_INSTALL_BINDIR})
foreach(unit meshd-agent.service meshd-coordinator.service)
  meshd_install_text(${PROJECT_SOURCE_DIR}/deploy/systemd/${unit} ${MESHD_SYSTEMD_UNIT_DIR} ${unit}
                     COMPONENT runtime
                     REPLACE "ExecStart=/usr/local/bin/meshd "
                             "ExecStart=${meshd_full_bindir}/meshd ")
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/meshd.sysusers.conf
        DESTINATION ${MESHD_SYSUSERS_DIR} RENAME meshd.conf COMPONENT runtime)
# An example, not a configuration: the units read /etc/meshd/{agent,coordinator}.env when present.
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/meshd.env.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
if(EXISTS ${PROJECT_SOURCE_DIR}/LICENSE)
  install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
endif()

# --- client: the CMake package (the library, headers and .pc file are installed by client/) ---
# meshd::client's public headers use absl::Status, StatusOr and Duration: a consumer needs the same
# Abseil (its version file accepts this version only) and nothing else (gRPC and protobuf stay
# inside libmeshd_client).
install(EXPORT meshdTargets NAMESPACE meshd:: DESTINATION ${MESHD_CMAKE_PACKAGE_DIR}
        FILE meshdTargets.cmake COMPONENT client)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/meshdConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/cmake/meshdConfig.cmake
                              INSTALL_DESTINATION ${MESHD_CMAKE_PACKAGE_DIR})
# 0.x: a new minor version may break the API.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/meshdConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/meshdConfig.cmake
              ${CMAKE_BINARY_DIR}/cmake/meshdConfigVersion.cmake
        DESTINATION ${MESHD_CMAKE_PACKAGE_DIR} COMPONENT client)
