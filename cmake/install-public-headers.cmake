# Install usmp's public headers, run at install time (install(CODE)).
#
# In:  USMP_SOURCE_DIR   the source tree
#      USMP_HEADER_DEST  absolute destination (…/include/usmp); DESTDIR is
#                        applied by file(INSTALL)
#
# Public headers are <component>/*.h for the four library components.  A
# private header (<component>/internal/*.h) is installed only when a public
# header includes it, directly or through other headers, so that every
# installed header compiles and nothing else leaks.  The generated
# runtime/config.h is installed separately (it lives in the build tree).
cmake_policy(PUSH)
cmake_policy(VERSION 3.25) # cmake_install.cmake runs under old policies
set(_components runtime sched sync interrupts)

set(_queue "")
foreach(c IN LISTS _components)
  file(GLOB _h RELATIVE "${USMP_SOURCE_DIR}" "${USMP_SOURCE_DIR}/${c}/*.h")
  list(APPEND _queue ${_h})
endforeach()

set(_seen "")
while(_queue)
  list(POP_FRONT _queue _rel)
  if(_rel IN_LIST _seen)
    continue()
  endif()
  list(APPEND _seen "${_rel}")
  file(STRINGS "${USMP_SOURCE_DIR}/${_rel}" _lines
    REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<][^\">]+[\">]")
  foreach(_line IN LISTS _lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[\"<]([^\">]+)[\">].*" "\\1" _inc "${_line}")
    if(_inc MATCHES "^(runtime|sched|sync|interrupts)/"
        AND EXISTS "${USMP_SOURCE_DIR}/${_inc}"
        AND NOT _inc IN_LIST _seen)
      list(APPEND _queue "${_inc}")
    elseif(_inc MATCHES "^(runtime|sched|sync|interrupts|apps)/"
        AND NOT _inc STREQUAL "runtime/config.h"
        AND NOT EXISTS "${USMP_SOURCE_DIR}/${_inc}")
      message(WARNING "usmp install: ${_rel} includes ${_inc}, which does not exist")
    endif()
  endforeach()
endwhile()

list(SORT _seen)
foreach(_rel IN LISTS _seen)
  get_filename_component(_dir "${_rel}" DIRECTORY)
  file(INSTALL DESTINATION "${USMP_HEADER_DEST}/${_dir}" TYPE FILE
    FILES "${USMP_SOURCE_DIR}/${_rel}")
endforeach()
cmake_policy(POP)
