# Cross toolchain for 64-bit ARM Linux (Debian's g++-aarch64-linux-gnu); run the results under
# qemu-user: qemu-aarch64 -L /usr/aarch64-linux-gnu build/aarch64/akvq_tests
#   cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DAKVQ_NATIVE=OFF -DAKVQ_CUDA=OFF -DAKVQ_BUILD_TESTS=ON
# GTest is then built from the sources of libgtest-dev (AKVQ_GTEST_SOURCE_DIR, CMakeLists.txt).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(AKVQ_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${AKVQ_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${AKVQ_CROSS_TRIPLE}-g++)
set(CMAKE_FIND_ROOT_PATH /usr/${AKVQ_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Target ISA: baseline ARMv8-A (NEON and fp16<->f32 conversion are part of it; the kernels need
# nothing more). Override with e.g. -DAKVQ_ARM_MARCH=armv8.2-a+fp16+dotprod.
set(AKVQ_ARM_MARCH "armv8-a" CACHE STRING "-march for the aarch64 cross build")
set(CMAKE_CXX_FLAGS_INIT "-march=${AKVQ_ARM_MARCH}")
set(CMAKE_C_FLAGS_INIT "-march=${AKVQ_ARM_MARCH}")

# Running cross-built programs (try_run, ctest) goes through qemu-user.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/${AKVQ_CROSS_TRIPLE})
