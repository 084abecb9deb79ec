// The target's headers are in include/; SwiftPM needs one source file.
