# ctest driver (cmake -P) for the tests that need debug options compiled in:
# USMP_KTR and USMP_LOCK_PROFILING change the layout of thread and
# lock_object (public compile definitions), so their tests run against a
# second build of the library with both ON.  Both in one build because the
# options are independent and the library compile is what costs: one
# sub-build instead of one per option.  Only the library and the listed
# test executables are built there; the build tree is kept between runs, so
# later runs are incremental.
#
# In: USMP_SOURCE_DIR, WORK_DIR, GENERATOR, CXX, BUILD_TYPE, LAUNCHER (the
#     parent's compiler launcher, e.g. ccache; may be empty), TESTS (the
#     test executables, ,-separated), OPTIONS (-D arguments, ,-separated)
cmake_minimum_required(VERSION 3.25)

foreach(v USMP_SOURCE_DIR WORK_DIR CXX TESTS OPTIONS)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "options-on-test: ${v} not set")
  endif()
endforeach()
string(REPLACE "," ";" TESTS "${TESTS}")
string(REPLACE "," ";" OPTIONS "${OPTIONS}")
if(NOT BUILD_TYPE)
  set(BUILD_TYPE RelWithDebInfo)
endif()

function(run)
  string(REPLACE ";" " " _cmd "${ARGN}")
  message(STATUS "options-on-test: ${_cmd}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "options-on-test: failed (${rc}): ${_cmd}")
  endif()
endfunction()

set(args -S ${USMP_SOURCE_DIR} -B ${WORK_DIR}
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX}
  -DUSMP_BUILD_APPS=OFF -DUSMP_INSTALL=OFF -DUSMP_SUBBUILD=ON ${OPTIONS})
if(LAUNCHER)
  list(APPEND args -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}
    -DCMAKE_C_COMPILER_LAUNCHER=${LAUNCHER})
endif()
if(GENERATOR AND NOT EXISTS ${WORK_DIR}/CMakeCache.txt)
  list(APPEND args -G ${GENERATOR})
endif()
# Configure every time (cheap once configured): a changed OPTIONS list takes.
run(${CMAKE_COMMAND} ${args})
run(${CMAKE_COMMAND} --build ${WORK_DIR} -j 2 --target ${TESTS})

set(failed "")
foreach(t IN LISTS TESTS)
  message(STATUS "options-on-test: running ${t}")
  execute_process(COMMAND ${WORK_DIR}/tests/${t} RESULT_VARIABLE rc
    WORKING_DIRECTORY ${WORK_DIR}/tests)
  if(NOT rc EQUAL 0)
    list(APPEND failed ${t})
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "options-on-test: failed with ${OPTIONS}: ${failed}")
endif()
message(STATUS "options-on-test: ${TESTS} passed with ${OPTIONS}")
