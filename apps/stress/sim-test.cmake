# ctest usmp_stress_sim: `usmp-stress --sim --seed N` is deterministic.
#   -DSTRESS=<usmp-stress> -DOUT=<scratch directory>
# The same seed twice: exit 0, the seed printed, byte-identical step logs
# (compared by hash); another seed: a different log.  A planted race under
# --sim: exit 1 with the failure and the replay command.
file(MAKE_DIRECTORY ${OUT})
set(common --sim -c 4 -n 100 -s mutex -s sx -s sleep --quiet)
function(run_sim seed log)
  execute_process(
    COMMAND ${STRESS} ${common} --seed ${seed} --sim-log ${OUT}/${log}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "seed ${seed}: exit status ${rc}, want 0\n${out}\n${err}")
  endif()
  file(READ ${OUT}/${log} text)
  string(FIND "${text}" "seed ${seed}\n" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the step log ${log} does not give seed ${seed}")
  endif()
  string(REGEX MATCH "\nsteps ([0-9]+)\n" m "${text}")
  if(NOT CMAKE_MATCH_1 GREATER 100)
    message(FATAL_ERROR "the step log ${log} has too few steps: ${m}")
  endif()
  file(SHA256 ${OUT}/${log} h)
  set(hash ${h} PARENT_SCOPE)
endfunction()
run_sim(7 a.log)
set(h1 ${hash})
run_sim(7 b.log)
set(h2 ${hash})
run_sim(8 c.log)
set(h3 ${hash})
if(NOT h1 STREQUAL h2)
  message(FATAL_ERROR "seed 7 twice: different step logs (${h1} vs ${h2}); "
    "diff ${OUT}/a.log ${OUT}/b.log")
endif()
if(h1 STREQUAL h3)
  message(FATAL_ERROR "seeds 7 and 8 gave the same step log")
endif()
message(STATUS "seed 7 twice: step log sha256 ${h1}; seed 8: ${h3}")

# Without --quiet the seed is printed.
execute_process(COMMAND ${STRESS} --sim -c 2 -n 20 -s mutex --seed 5
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${out}" "seed 5" at)
if(NOT rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "exit status ${rc} (want 0), seed 5 printed at ${at}:\n${out}\n${err}")
endif()

# A planted race fails, with the seed and the replay command.
execute_process(
  COMMAND ${STRESS} --sim -c 2 -n 200 -s planted-race --seed 3 --quiet
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "planted-race under --sim: exit status ${rc}, want 1\n${out}\n${err}")
endif()
string(FIND "${err}" "replay with: usmp-stress --sim --seed 3" at)
if(at EQUAL -1)
  message(FATAL_ERROR "planted-race under --sim: no replay line:\n${err}")
endif()
