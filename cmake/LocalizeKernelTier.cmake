# Run as a POST_BUILD step on each kernel tier's static library:
#   cmake -DARCHIVE=<lib.a> -DOBJCOPY=<objcopy> -DLINKER=<ld> -DAR=<ar> -P LocalizeKernelTier.cmake
#
# Every tier compiles the same sources, so every tier's objects define the same
# weak hidden symbols: specializations of standard-library generics (SIMD16's
# min(), Array growth, ...), each compiled for that tier's CPU. Linked into one
# libattnkit.so, the linker keeps one copy of each, and code of the AVX2 or
# generic tier could call an AVX-512 copy: an illegal instruction on a CPU
# without AVX-512 (a thread-sanitizer build did exactly that). This step links
# the tier's objects into one relocatable object and makes its hidden symbols
# local, so each tier keeps and calls its own copies. Symbols other modules
# use (public and package declarations) have default visibility and stay global.
foreach(variable ARCHIVE OBJCOPY LINKER AR)
  if(NOT ${variable})
    message(FATAL_ERROR "LocalizeKernelTier.cmake needs -D${variable}=...")
  endif()
endforeach()
get_filename_component(name "${ARCHIVE}" NAME_WE)
set(work "${ARCHIVE}.localize")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}")
execute_process(COMMAND "${AR}" x "${ARCHIVE}" WORKING_DIRECTORY "${work}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${AR} x ${ARCHIVE} failed")
endif()
file(GLOB objects "${work}/*.o")
# swiftc updates an existing archive in place, so a rebuilt archive still holds
# the previous run's combined object beside the new objects: leave it out.
list(FILTER objects EXCLUDE REGEX "\\.tier\\.o$")
list(LENGTH objects count)
if(count EQUAL 0)
  message(FATAL_ERROR "no objects in ${ARCHIVE}")
endif()
execute_process(COMMAND "${LINKER}" -r -o "${work}/${name}.tier.o" ${objects} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${LINKER} -r failed for ${ARCHIVE}")
endif()
execute_process(COMMAND "${OBJCOPY}" --localize-hidden "${work}/${name}.tier.o" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${OBJCOPY} --localize-hidden failed for ${ARCHIVE}")
endif()
file(REMOVE "${ARCHIVE}")
execute_process(COMMAND "${AR}" rcs "${ARCHIVE}" "${work}/${name}.tier.o" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${AR} rcs ${ARCHIVE} failed")
endif()
file(REMOVE_RECURSE "${work}")
