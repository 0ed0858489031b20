# Install rules for usmp: the library, its public headers (preserving the
# tree under include/usmp/), the generated runtime/config.h, a CMake package
# (find_package(usmp) -> usmp::usmp) and a pkg-config file (usmp.pc).
#
# Included from the top CMakeLists.txt after the usmp target exists.
include(CMakePackageConfigHelpers)

set(USMP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/usmp CACHE STRING
  "Where the CMake package of usmp is installed (relative to the prefix)")
mark_as_advanced(USMP_INSTALL_CMAKEDIR)

get_target_property(_usmp_type usmp TYPE)
if(_usmp_type STREQUAL "STATIC_LIBRARY")
  set(USMP_STATIC 1)
else()
  set(USMP_STATIC 0)
endif()

install(TARGETS usmp EXPORT usmpTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
    NAMELINK_COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

# Public headers are <component>/*.h.  Private ones (<component>/internal/*.h)
# are installed only when a public header includes them, directly or not
# (runtime/thread.h includes runtime/internal/spinlock.h).  The closure is
# computed at install time, so it always matches the sources.
install(CODE "
  set(USMP_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(USMP_HEADER_DEST \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_INCLUDEDIR}/usmp\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install-public-headers.cmake\")
  " COMPONENT development)
install(FILES ${PROJECT_BINARY_DIR}/generated/runtime/config.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/usmp/runtime COMPONENT development)

# The gdb extension, for `source` by hand (gdb also finds it inline in the
# library's .debug_gdb_scripts section).
install(FILES ${PROJECT_SOURCE_DIR}/tools/gdb/usmp-gdb.py
  DESTINATION ${CMAKE_INSTALL_DATADIR}/usmp/gdb COMPONENT development)

# CMake package.
install(EXPORT usmpTargets NAMESPACE usmp:: FILE usmpTargets.cmake
  DESTINATION ${USMP_INSTALL_CMAKEDIR} COMPONENT development)
configure_package_config_file(cmake/usmpConfig.cmake.in
  ${PROJECT_BINARY_DIR}/usmpConfig.cmake
  INSTALL_DESTINATION ${USMP_INSTALL_CMAKEDIR})
# 0.x: only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/usmpConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/usmpConfig.cmake
  ${PROJECT_BINARY_DIR}/usmpConfigVersion.cmake
  DESTINATION ${USMP_INSTALL_CMAKEDIR} COMPONENT development)

# pkg-config.  Static consumers use `pkg-config --static --libs usmp`, which
# adds Libs.private: Boost.Context, hwloc, liburing and dl.  hwloc and liburing
# are named there directly rather than in Requires.private, on purpose:
# `--static` would then also pull hwloc's own Libs.private (-ludev), which
# fails to link on Debian without libudev-dev, although we link the shared
# libhwloc; and no public header of usmp includes them, so their Cflags are
# not needed.
set(USMP_PC_CFLAGS "")
foreach(def IN ITEMS INVARIANTS WITNESS KTR LOCK_PROFILING)
  string(APPEND USMP_PC_CFLAGS " -DUSMP_${def}=${USMP_${def}_01}")
endforeach()
string(APPEND USMP_PC_CFLAGS " -DUSMP_SANITIZE_ADDRESS=${USMP_SANITIZE_ADDRESS_01}")
string(APPEND USMP_PC_CFLAGS " -DUSMP_SANITIZE_THREAD=${USMP_SANITIZE_THREAD_01}")
set(USMP_PC_LIBS "")
if(USMP_SANITIZE)
  list(JOIN USMP_SANITIZE_FLAGS " " _usmp_san_flags)
  string(APPEND USMP_PC_CFLAGS " ${_usmp_san_flags}")
  string(APPEND USMP_PC_LIBS " -fsanitize=${_usmp_san}")
endif()
# Boost.Context ships no .pc file: name its library directly.
get_target_property(_usmp_bctx Boost::context LOCATION)
get_filename_component(_usmp_bctx_dir "${_usmp_bctx}" DIRECTORY)
set(USMP_PC_LIBS_PRIVATE "-L${_usmp_bctx_dir} -lboost_context")
foreach(_usmp_flag IN LISTS USMP_HWLOC_LDFLAGS USMP_URING_LDFLAGS)
  if(NOT " ${USMP_PC_LIBS_PRIVATE} " MATCHES " ${_usmp_flag} ")
    string(APPEND USMP_PC_LIBS_PRIVATE " ${_usmp_flag}")
  endif()
endforeach()
if(USMP_PC_EXTRA_PRIVATE)
  string(APPEND USMP_PC_LIBS_PRIVATE " ${USMP_PC_EXTRA_PRIVATE}")
endif()
if(CMAKE_DL_LIBS)
  foreach(l IN LISTS CMAKE_DL_LIBS)
    string(APPEND USMP_PC_LIBS_PRIVATE " -l${l}")
  endforeach()
endif()
# Relocatable: the prefix is found from the .pc file's own place, so that
# `cmake --install build --prefix DIR` gives a usable file in any DIR.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(USMP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _usmp_up "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" _usmp_up "${_usmp_up}")
  set(USMP_PC_PREFIX "\${pcfiledir}/${_usmp_up}")
endif()
configure_file(cmake/usmp.pc.in ${PROJECT_BINARY_DIR}/usmp.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/usmp.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT development)
