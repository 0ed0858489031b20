# ctest usmp_stress_planted_failure: usmp-stress on the planted race must
# exit 1 and print the failure with the command that replays it.
execute_process(
  COMMAND ${STRESS} --scenario planted-race --cpus 4 --duration 0.3 --seed 42
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "exit status ${rc}, want 1\n${out}\n${err}")
endif()
foreach(want "planted-race FAILED: planted-race: counter"
    "replay with: usmp-stress --scenario planted-race --cpus 4 --seed 42")
  string(FIND "${err}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "stderr lacks \"${want}\":\n${err}")
  endif()
endforeach()
