# NCCL headers and library -> imported target NCCL::NCCL (included by parallel/ when
# SOME_WITH_CUDA is ON). Searched, in order:
#   1. NCCL_ROOT (CMake variable or environment): a prefix holding include/nccl.h and lib/libnccl.so*
#   2. PyPI's nvidia-nccl-cu13 in the project venv (scripts/setup.sh installs it):
#      .venv/lib/python3.*/site-packages/nvidia/nccl/{include,lib}
#   3. the Python3 interpreter's site-packages (a venv or conda environment that is active)
#   4. system locations (/usr, /usr/local/cuda, CUDA toolkit dirs, CMAKE_PREFIX_PATH)
# The wheel ships only libnccl.so.2 (no libnccl.so development link), so that name is searched
# explicitly. Result variables: NCCL_INCLUDE_DIR, NCCL_LIBRARY, NCCL_VERSION.
include_guard(GLOBAL)

find_package(CUDAToolkit REQUIRED)  # nccl.h includes cuda_runtime.h

set(NCCL_ROOT "$ENV{NCCL_ROOT}" CACHE PATH "NCCL prefix (include/nccl.h, lib/libnccl.so*)")

set(_nccl_hints "")
if(NCCL_ROOT)
  list(APPEND _nccl_hints "${NCCL_ROOT}")
endif()
file(GLOB _nccl_venv_dirs LIST_DIRECTORIES true
     "${PROJECT_SOURCE_DIR}/.venv/lib/python3*/site-packages/nvidia/nccl")
list(APPEND _nccl_hints ${_nccl_venv_dirs})
if(NOT _nccl_venv_dirs)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(COMMAND "${Python3_EXECUTABLE}" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                    OUTPUT_VARIABLE _nccl_purelib OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_nccl_purelib AND EXISTS "${_nccl_purelib}/nvidia/nccl")
      list(APPEND _nccl_hints "${_nccl_purelib}/nvidia/nccl")
    endif()
  endif()
endif()

# With NCCL_ROOT set, only it is searched: a wrong root must not silently fall back elsewhere.
if(NCCL_ROOT)
  set(_nccl_default_paths NO_DEFAULT_PATH)
  set(_nccl_cuda_inc "")
  set(_nccl_cuda_lib "")
else()
  set(_nccl_default_paths "")
  set(_nccl_cuda_inc ${CUDAToolkit_INCLUDE_DIRS})
  set(_nccl_cuda_lib ${CUDAToolkit_LIBRARY_DIR})
endif()

find_path(NCCL_INCLUDE_DIR nccl.h
          HINTS ${_nccl_hints} ${_nccl_cuda_inc}
          PATH_SUFFIXES include
          ${_nccl_default_paths})
find_library(NCCL_LIBRARY
             NAMES nccl libnccl.so.2 libnccl.so
             HINTS ${_nccl_hints} ${_nccl_cuda_lib}
             PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu lib/aarch64-linux-gnu
             ${_nccl_default_paths})

if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
  message(FATAL_ERROR
    "NCCL not found (SOME_WITH_CUDA=ON needs it): nccl.h -> '${NCCL_INCLUDE_DIR}', "
    "libnccl.so.2 -> '${NCCL_LIBRARY}'. Searched: NCCL_ROOT='${NCCL_ROOT}', "
    "the venv wheel ${PROJECT_SOURCE_DIR}/.venv/lib/python3*/site-packages/nvidia/nccl, and system paths.\n"
    "Install it with:  ${PROJECT_SOURCE_DIR}/.venv/bin/pip install nvidia-nccl-cu13   (scripts/setup.sh does this)\n"
    "or point -DNCCL_ROOT=<prefix> (or the NCCL_ROOT environment variable) at an NCCL install, "
    "or build with -DSOME_WITH_CUDA=OFF.")
endif()

set(NCCL_VERSION "")
file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_version_lines REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
foreach(_line IN LISTS _nccl_version_lines)
  if(_line MATCHES "^#define NCCL_(MAJOR|MINOR|PATCH) +([0-9]+)")
    set(_nccl_${CMAKE_MATCH_1} ${CMAKE_MATCH_2})
  endif()
endforeach()
if(DEFINED _nccl_MAJOR)
  set(NCCL_VERSION "${_nccl_MAJOR}.${_nccl_MINOR}.${_nccl_PATCH}")
endif()

if(NOT TARGET NCCL::NCCL)
  add_library(NCCL::NCCL SHARED IMPORTED GLOBAL)
  set_target_properties(NCCL::NCCL PROPERTIES
    IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES CUDA::cudart)
  # libnccl.so.2 has SONAME libnccl.so.2: the linker records that, and executables find it via
  # the build RPATH CMake adds for the library's directory.
endif()
message(STATUS "SoME: NCCL ${NCCL_VERSION}: ${NCCL_LIBRARY} (headers ${NCCL_INCLUDE_DIR})")
