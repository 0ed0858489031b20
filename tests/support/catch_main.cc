// The Catch2 main of every usmp test executable, compiled once
// (tests/CMakeLists.txt links it into each test through usmp_testmain).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
