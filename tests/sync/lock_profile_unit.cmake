# A second ctest: lock_profile_unit.cc in a build with USMP_LOCK_PROFILING=ON
# (it changes the layout of lock_object, so it needs its own build
# directory; only the library and this test are built there).
set(_prof_dir ${CMAKE_CURRENT_BINARY_DIR}/profiling-on)
add_test(NAME test_sync_lock_profile_on
  COMMAND sh -c "'${CMAKE_COMMAND}' -S '${PROJECT_SOURCE_DIR}' -B '${_prof_dir}' -G '${CMAKE_GENERATOR}' -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE} -DUSMP_LOCK_PROFILING=ON -DUSMP_BUILD_APPS=OFF -DUSMP_INSTALL=OFF > '${_prof_dir}.log' 2>&1 || { cat '${_prof_dir}.log'; exit 1; }; '${CMAKE_COMMAND}' --build '${_prof_dir}' --target ${USMP_TEST_TARGET} -j2 && '${_prof_dir}/tests/${USMP_TEST_TARGET}'")
set_tests_properties(test_sync_lock_profile_on PROPERTIES
  LABELS "build;sync;profiling" TIMEOUT 1800 PROCESSORS 2)
