# AKVQ_CUDA=AUTO|ON|OFF. AUTO enables CUDA when nvcc is found; ON requires it and fails at
# configure time otherwise. Without CUDA the stub backend in engine/cuda/stub.cpp reports
# is_available()==false and throws a clear error when asked for.
# CMAKE_CUDA_ARCHITECTURES defaults to sm_80, 86, 89, 90 + PTX of 90 (override it, e.g. 90 for a
# quick single-architecture build). The runtime is linked statically (cudart_static), so a build
# with CUDA still imports on a machine without the CUDA toolkit; it then reports no device.
set(AKVQ_CUDA_GLUE_SOURCES "")
set(AKVQ_CUDA_LIBS "")
set(AKVQ_WITH_CUDA OFF)
file(GLOB AKVQ_CUDA_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/*.cu)
string(TOUPPER "${AKVQ_CUDA}" _akvq_cuda)
if(_akvq_cuda STREQUAL "ON" AND NOT AKVQ_CUDA_KERNELS)
  message(FATAL_ERROR "AKVQ_CUDA=ON, but this version of pyakvq has no CUDA backend yet (no kernels in "
                      "cuda/): configure with -DAKVQ_CUDA=OFF or AUTO to build the CPU engine")
endif()
if(_akvq_cuda STREQUAL "ON" OR _akvq_cuda STREQUAL "AUTO")
  if(AKVQ_CUDA_KERNELS)
    include(CheckLanguage)
    check_language(CUDA)
  endif()
  if(AKVQ_CUDA_KERNELS AND CMAKE_CUDA_COMPILER)
    set(AKVQ_WITH_CUDA ON)
  elseif(_akvq_cuda STREQUAL "ON")
    message(FATAL_ERROR "AKVQ_CUDA=ON but no CUDA compiler (nvcc) was found: install the CUDA toolkit, put nvcc "
                        "on PATH (or set CMAKE_CUDA_COMPILER), or configure with -DAKVQ_CUDA=OFF")
  endif()
elseif(NOT _akvq_cuda STREQUAL "OFF")
  message(FATAL_ERROR "AKVQ_CUDA must be AUTO, ON or OFF (got '${AKVQ_CUDA}')")
endif()

if(AKVQ_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual")
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  add_library(akvq_cuda_kernels STATIC ${AKVQ_CUDA_KERNELS})
  target_link_libraries(akvq_cuda_kernels PUBLIC CUDA::cudart_static)
  target_include_directories(akvq_cuda_kernels PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/cuda)
  set(AKVQ_CUDA_LIBS akvq_cuda_kernels CUDA::cudart_static)
  file(GLOB AKVQ_CUDA_GLUE_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/*.cpp)
  list(FILTER AKVQ_CUDA_GLUE_SOURCES EXCLUDE REGEX "/stub\\.cpp$")
  add_compile_definitions(AKVQ_WITH_CUDA=1)
  string(REPLACE ";" " " _akvq_archs "${CMAKE_CUDA_ARCHITECTURES}")
  set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/backend.cpp PROPERTIES
                              COMPILE_DEFINITIONS "AKVQ_CUDA_ARCHS=\"${_akvq_archs}\"")
else()
  # CUDA disabled or no nvcc: the stub backend.
  set(AKVQ_CUDA_GLUE_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/engine/cuda/stub.cpp)
endif()
message(STATUS "pyakvq: CUDA backend ${AKVQ_WITH_CUDA} (AKVQ_CUDA=${AKVQ_CUDA})")
