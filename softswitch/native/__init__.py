"""The softswitch's native packet pipeline: the program compiled to C (cexpr, cactions, ccontrol, cparser,
ccalc -> cprogram, over the traversals of codegen/), built with cffi and the system C compiler and cached
(build), run by backend.NativeEngine. runtime.h and engine.c are the static C. docs/softswitch.md describes it."""
