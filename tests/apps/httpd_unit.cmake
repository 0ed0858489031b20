# The test starts the usmp-httpd binary: name it, and build it first.
if(TARGET usmp-httpd)
  set_tests_properties(${USMP_TEST_NAME} PROPERTIES
    ENVIRONMENT "USMP_HTTPD=$<TARGET_FILE:usmp-httpd>")
  add_dependencies(${USMP_TEST_TARGET} usmp-httpd)
else()
  set_tests_properties(${USMP_TEST_NAME} PROPERTIES DISABLED TRUE)
endif()
