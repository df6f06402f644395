package main

import "unsafe"

// unsafePointer converts a pointer for raw syscalls.
func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }
