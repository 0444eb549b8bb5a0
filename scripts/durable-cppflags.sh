#!/usr/bin/env bash
# Prints the CPPFLAGS durable-rules 2.0.28 needs to build for the given Python.
# Python 3.13 removed PyEval_CallObject, which the engine's binding calls: map it to PyObject_CallObject.
set -euo pipefail
py=${1:-python3}
minor=$("$py" -c 'import sys; print(sys.version_info[1])')
if [ "$minor" -ge 13 ]; then echo "-DPyEval_CallObject=PyObject_CallObject"; fi
