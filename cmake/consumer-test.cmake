# ctest driver (cmake -P) for the consumer project in tests/consumer/.
#
# In: MODE             install | package | pkgconfig | subdirectory
#     USMP_SOURCE_DIR  usmp's source tree
#     USMP_BUILD_DIR   usmp's (already built) build tree
#     CONSUMER_SOURCE_DIR, WORK_DIR, GENERATOR, CXX, BUILD_TYPE
#
# install:      `cmake --install USMP_BUILD_DIR --prefix WORK_DIR/prefix`
#               (a fresh prefix each time; the ctest fixture of the next two)
# package:      configure + build the consumer with find_package(usmp) and
#               CMAKE_PREFIX_PATH=WORK_DIR/prefix, every installed header in
#               its own translation unit, then run it
# pkgconfig:    compile + link the consumer with `pkg-config --static` only
#               against the same prefix, then run it
# subdirectory: configure + build the consumer with add_subdirectory of the
#               source tree (compiles usmp again; incremental on later runs)
cmake_minimum_required(VERSION 3.25)

foreach(v MODE USMP_SOURCE_DIR USMP_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "consumer-test: ${v} not set")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE RelWithDebInfo)
endif()
set(prefix ${WORK_DIR}/prefix)

function(run)
  string(REPLACE ";" " " _cmd "${ARGN}")
  message(STATUS "consumer-test: ${_cmd}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer-test (${MODE}): command failed (${rc}): ${_cmd}")
  endif()
endfunction()

set(gen_args "")
if(GENERATOR)
  set(gen_args -G "${GENERATOR}")
endif()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE ${prefix})
  run(${CMAKE_COMMAND} --install ${USMP_BUILD_DIR} --prefix ${prefix})
  # What must be there.
  file(GLOB_RECURSE _cfg ${prefix}/*/usmpConfig.cmake)
  file(GLOB_RECURSE _pc ${prefix}/*/usmp.pc)
  foreach(f ${prefix}/include/usmp/runtime/config.h
      ${prefix}/include/usmp/runtime/thread.h
      ${prefix}/include/usmp/runtime/machine.h
      ${prefix}/include/usmp/runtime/internal/spinlock.h)
    if(NOT EXISTS ${f})
      message(FATAL_ERROR "consumer-test: not installed: ${f}")
    endif()
  endforeach()
  if(NOT _cfg OR NOT _pc)
    message(FATAL_ERROR "consumer-test: usmpConfig.cmake or usmp.pc not installed")
  endif()
  # What must not: private headers that no public header includes.
  file(GLOB_RECURSE _internal RELATIVE ${prefix}/include/usmp
    ${prefix}/include/usmp/*/internal/*.h)
  message(STATUS "consumer-test: installed internal headers: ${_internal}")
  foreach(h IN LISTS _internal)
    execute_process(COMMAND grep -rlE "#[ \t]*include[ \t]*[\"<]${h}[\">]"
        ${prefix}/include/usmp RESULT_VARIABLE rc OUTPUT_QUIET)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "consumer-test: ${h} installed but no installed header includes it")
    endif()
  endforeach()
  message(STATUS "consumer-test: install into ${prefix} ok")

elseif(MODE STREQUAL "package")
  set(bin ${WORK_DIR}/package)
  run(${CMAKE_COMMAND} ${gen_args} -S ${CONSUMER_SOURCE_DIR} -B ${bin}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_PREFIX_PATH=${prefix} -DUSMP_CONSUMER_MODE=package
    -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
  run(${CMAKE_COMMAND} --build ${bin} -j 2)
  run(${bin}/consumer)

elseif(MODE STREQUAL "pkgconfig")
  file(GLOB_RECURSE _pc ${prefix}/*/usmp.pc)
  list(GET _pc 0 _pc)
  get_filename_component(_pcdir ${_pc} DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} ${_pcdir})
  execute_process(COMMAND pkg-config --cflags --libs --static usmp
    OUTPUT_VARIABLE _flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer-test: pkg-config --static usmp failed")
  endif()
  separate_arguments(_flags UNIX_COMMAND "${_flags}")
  file(MAKE_DIRECTORY ${WORK_DIR}/pkgconfig)
  run(${CXX} -std=c++20 -O1 ${CONSUMER_SOURCE_DIR}/main.cc
    -o ${WORK_DIR}/pkgconfig/consumer ${_flags})
  run(${WORK_DIR}/pkgconfig/consumer)

elseif(MODE STREQUAL "subdirectory")
  set(bin ${WORK_DIR}/subdirectory)
  run(${CMAKE_COMMAND} ${gen_args} -S ${CONSUMER_SOURCE_DIR} -B ${bin}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX}
    -DUSMP_CONSUMER_MODE=subdirectory -DUSMP_SOURCE_DIR=${USMP_SOURCE_DIR})
  run(${CMAKE_COMMAND} --build ${bin} -j 2 --target consumer)
  run(${bin}/consumer)

else()
  message(FATAL_ERROR "consumer-test: unknown MODE '${MODE}'")
endif()
