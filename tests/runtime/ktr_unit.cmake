# The KTR trace test proper: tests/runtime/ktr/ built against usmp compiled
# with USMP_KTR=ON (a sub-build of the source tree in build/tests/ktr/,
# incremental after the first run), run on 4 CPUs, its Chrome trace JSON
# parsed and checked for switch events on every CPU (cmake/ktr-test.cmake).
add_test(NAME test_runtime_ktr_trace
  COMMAND ${CMAKE_COMMAND}
    -DUSMP_SOURCE_DIR=${PROJECT_SOURCE_DIR}
    -DPROGRAM_SOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}/runtime/ktr
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/ktr
    -DGENERATOR=${CMAKE_GENERATOR}
    -DCXX=${CMAKE_CXX_COMPILER}
    -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
    -DNCPUS=4
    -P ${PROJECT_SOURCE_DIR}/cmake/ktr-test.cmake)
set_tests_properties(test_runtime_ktr_trace PROPERTIES
  LABELS "unit;runtime;build" TIMEOUT 900 PROCESSORS 2)
