# ctests usmp_stress_planted_failure and usmp_stress_witness_reversal:
# usmp-stress on a scenario that must fail exits 1 and prints the failure
# and the command that replays it.
#   -DSTRESS=<usmp-stress> -DSCENARIO=<name> -DWANT=<strings;...>
#   [-DARGS=<more arguments;...>]
execute_process(
  COMMAND ${STRESS} --scenario ${SCENARIO} --cpus 4 --duration 0.3 --seed 42
    ${ARGS}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "exit status ${rc}, want 1\n${out}\n${err}")
endif()
foreach(want ${WANT}
    "replay with: usmp-stress --scenario ${SCENARIO} --cpus 4 --seed 42")
  string(FIND "${err}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "stderr lacks \"${want}\":\n${err}")
  endif()
endforeach()
