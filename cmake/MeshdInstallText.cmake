# Install-time half of meshd_install_text() (cmake/MeshdInstall.cmake): runs inside
# cmake_install.cmake, where CMAKE_INSTALL_PREFIX is the prefix of this install (--prefix) and
# DESTDIR, the install manifest and the "-- Installing:" lines are file(INSTALL)'s business.

# meshd_install_text_now(<source> <destination> <name> <scratch dir> [CONFIGURE]
#                        [REPLACE <from> <to>]...)
function(meshd_install_text_now source destination name scratch)
  cmake_parse_arguments(PARSE_ARGV 4 T "CONFIGURE" "" "REPLACE")
  file(READ "${source}" text)
  if(T_CONFIGURE)
    set(prefix "${CMAKE_INSTALL_PREFIX}")
    string(CONFIGURE "${text}" text @ONLY)
  endif()
  while(T_REPLACE)
    list(POP_FRONT T_REPLACE from to)
    string(FIND "${text}" "${from}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "meshd install: '${from}' not found in ${source}")
    endif()
    string(REPLACE "${from}" "${to}" text "${text}")
  endwhile()
  if(NOT IS_ABSOLUTE "${destination}")
    set(destination "${CMAKE_INSTALL_PREFIX}/${destination}")
  endif()
  # A file of its own per install, so that two installs of one build tree never share it.
  string(RANDOM LENGTH 16 tag)
  set(edited "${scratch}/${tag}/${name}")
  file(WRITE "${edited}" "${text}")
  file(INSTALL DESTINATION "${destination}" TYPE FILE FILES "${edited}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  file(REMOVE_RECURSE "${scratch}/${tag}")
  # file(INSTALL) lists what it wrote in this variable, for install_manifest.txt.
  set(CMAKE_INSTALL_MANIFEST_FILES "${CMAKE_INSTALL_MANIFEST_FILES}" PARENT_SCOPE)
endfunction()
