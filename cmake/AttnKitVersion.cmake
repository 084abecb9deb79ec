# Reads ATTNKIT_VERSION_MAJOR/MINOR/PATCH from include/attnkit.h, the one place
# the version is written, into ATTNKIT_VERSION.
function(attnkit_read_version header out_var)
  file(STRINGS "${header}" lines REGEX "^#define ATTNKIT_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "ATTNKIT_VERSION_${part} ([0-9]+)" _ "${lines}")
    set(${part} "${CMAKE_MATCH_1}")
    if(NOT ${part} MATCHES "^[0-9]+$")
      message(FATAL_ERROR "could not read ATTNKIT_VERSION_${part} from ${header}")
    endif()
  endforeach()
  set(${out_var} "${MAJOR}.${MINOR}.${PATCH}" PARENT_SCOPE)
endfunction()
