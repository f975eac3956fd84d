// Empty: the kernel emulator's emu.h (included first) defines what this CUDA header would.
#pragma once
