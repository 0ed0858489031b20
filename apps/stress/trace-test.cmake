# ctest usmp_stress_trace: `usmp-stress --trace FILE`.
#   -DSTRESS=<usmp-stress> -DOUT=<scratch directory> -DKTR=<ON|OFF>
# Without KTR compiled in, the tool must refuse (exit 2), say how to get a
# build with it, and write nothing.  With it, the file must be Chrome
# trace-event JSON with a track named cpuN for every CPU, each with "X"
# (ran) events of the scheduler.
set(ncpus 4)
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(json ${OUT}/trace.json)
execute_process(
  COMMAND ${STRESS} --scenario mutex --scenario condvar --cpus ${ncpus}
    --duration 0.3 --seed 1 --quiet --trace ${json} --trace-entries 4096
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)

if(NOT KTR)
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "exit status ${rc}, want 2 (no KTR)\n${out}\n${err}")
  endif()
  foreach(want "this build has no KTR" "cmake --preset ktr")
    string(FIND "${err}" "${want}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "stderr lacks \"${want}\":\n${err}")
    endif()
  endforeach()
  if(EXISTS ${json})
    message(FATAL_ERROR "${json} was written by a build without KTR")
  endif()
  return()
endif()

if(NOT rc EQUAL 0)
  message(FATAL_ERROR "exit status ${rc}, want 0\n${out}\n${err}")
endif()
file(READ ${json} doc)
string(JSON events ERROR_VARIABLE bad GET "${doc}" traceEvents)
if(bad)
  message(FATAL_ERROR "${json} is not a trace-event object: ${bad}")
endif()
string(JSON n LENGTH "${events}")
if(n EQUAL 0)
  message(FATAL_ERROR "${json} has no events")
endif()
# string(JSON) reparses the document on every call, so look for the rest in
# the text (one event a line, as runtime/ktr.cc writes them).
math(EXPR last "${ncpus} - 1")
foreach(c RANGE ${last})
  foreach(want
      "\"tid\":${c},\"name\":\"thread_name\",\"args\":{\"name\":\"cpu${c}\"}"
      "{\"ph\":\"X\",\"cat\":\"sched\",\"pid\":1,\"tid\":${c},")
    string(FIND "${doc}" "${want}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "${json}: no ${want} (cpu${c} has no track or ran nothing)")
    endif()
  endforeach()
endforeach()
message(STATUS "${n} trace events, every CPU ran threads")
