# ctest usmp_stress_witness_graph: after the deliberate reversal,
# --witness-graph writes WITNESS's learned order graph, naming both locks
# and drawing the reversed order in red: as DOT (no Graphviz needed), then
# as SVG through Graphviz's dot (skipped when dot is not installed).
#   -DSTRESS=<usmp-stress> -DOUT=<scratch directory>
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})

function(run_reversal path)
  execute_process(
    COMMAND ${STRESS} --scenario reversal --cpus 2 --duration 0.1 --seed 3
      --quiet --witness count --witness-graph ${path}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  # 1: the reversal fails the run; the graph is written all the same.
  if(NOT rc EQUAL 1)
    message(FATAL_ERROR "exit status ${rc}, want 1\n${out}\n${err}")
  endif()
  if(NOT EXISTS ${path})
    message(FATAL_ERROR "${path} was not written\n${err}")
  endif()
endfunction()

run_reversal(${OUT}/order.dot)
file(READ ${OUT}/order.dot dot)
# The edge "stress A" -> "stress B" (established first, then reversed) is
# the one in red; find the node ids from their labels.
string(REGEX MATCH "(w[0-9]+) \\[label=\"stress A\\\\n" m "${dot}")
set(a ${CMAKE_MATCH_1})
string(REGEX MATCH "(w[0-9]+) \\[label=\"stress B\\\\n" m "${dot}")
set(b ${CMAKE_MATCH_1})
if(a STREQUAL "" OR b STREQUAL "")
  message(FATAL_ERROR "the DOT graph does not name stress A and stress B:\n${dot}")
endif()
string(FIND "${dot}" "${a} -> ${b} [color=red" at)
if(at EQUAL -1)
  message(FATAL_ERROR "no red edge ${a} -> ${b} (stress A -> stress B):\n${dot}")
endif()

find_program(DOT dot)
if(NOT DOT)
  message("SKIPPED: no Graphviz dot, the SVG was not checked")
  return()
endif()
run_reversal(${OUT}/order.svg)
file(READ ${OUT}/order.svg svg)
foreach(want "<svg" "stress A" "stress B" "stroke=\"red\"")
  string(FIND "${svg}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the SVG lacks ${want}:\n${svg}")
  endif()
endforeach()
