# cmake -DSRC=<python/meshd> -DDST=<build/python/meshd> -P prune_stale.cmake
# Removes the copies under DST of Python files that no longer exist under SRC (a renamed or deleted
# module must not stay importable from the build tree). Built files (_core*.so,
# libmeshd_client.so) and caches are left alone.
file(GLOB_RECURSE copies RELATIVE ${DST} ${DST}/*.py ${DST}/*.pyi ${DST}/py.typed)
foreach(f IN LISTS copies)
  if(NOT EXISTS ${SRC}/${f})
    message(STATUS "meshd package: removing stale ${f}")
    file(REMOVE ${DST}/${f})
  endif()
endforeach()
