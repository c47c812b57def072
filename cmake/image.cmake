# Image codecs of the engine: PNG through libpng, JPEG through libjpeg, each optional. A codec
# whose library is missing builds from its stub (engine/image/codec_<fmt>_stub.cpp), which throws
# Unavailable ("this build cannot read PNG images ..."); the engine and akvq-cli build either way.
# Debian: libpng-dev, libjpeg-dev (or libjpeg62-turbo-dev). Force a codec off with
# -DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON / -DCMAKE_DISABLE_FIND_PACKAGE_JPEG=ON.
set(_akvq_image_dir ${CMAKE_CURRENT_SOURCE_DIR}/engine/image)
find_package(PNG QUIET)
find_package(JPEG QUIET)
if(PNG_FOUND)
  target_sources(akvq_engine PRIVATE ${_akvq_image_dir}/codec_png.cpp)
  target_link_libraries(akvq_engine PRIVATE PNG::PNG)
  message(STATUS "pyakvq: PNG decoding with libpng ${PNG_VERSION_STRING}")
else()
  target_sources(akvq_engine PRIVATE ${_akvq_image_dir}/codec_png_stub.cpp)
  message(STATUS "pyakvq: libpng not found, this build cannot read PNG images")
endif()
if(JPEG_FOUND)
  target_sources(akvq_engine PRIVATE ${_akvq_image_dir}/codec_jpeg.cpp)
  target_link_libraries(akvq_engine PRIVATE JPEG::JPEG)
  message(STATUS "pyakvq: JPEG decoding with libjpeg")
else()
  target_sources(akvq_engine PRIVATE ${_akvq_image_dir}/codec_jpeg_stub.cpp)
  message(STATUS "pyakvq: libjpeg not found, this build cannot read JPEG images")
endif()
# Bit-exact parity with PIL: no fused multiply-add contraction in the filter weights (see
# engine/image/resize.h).
file(GLOB _akvq_image_sources ${_akvq_image_dir}/*.cpp)
set_source_files_properties(${_akvq_image_sources} PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
