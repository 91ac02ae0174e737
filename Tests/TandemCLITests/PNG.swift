// A PNG's size and pixels, through cairo: the tests read back what `tandem plot` drew.

import CCairo
import Foundation
import Tandem

/// A PNG's size and its pixels as 0xRRGGBB (for the tests).
func readPNG(_ path: String) throws -> (width: Int, height: Int, pixels: [UInt32]) {
    guard let surface = cairo_image_surface_create_from_png(path), cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS
    else {
        throw TandemError.file(path, "not a readable PNG")
    }
    defer { cairo_surface_destroy(surface) }
    let w = Int(cairo_image_surface_get_width(surface))
    let h = Int(cairo_image_surface_get_height(surface))
    let stride = Int(cairo_image_surface_get_stride(surface))
    let data = cairo_image_surface_get_data(surface)!
    var pixels = [UInt32](repeating: 0, count: w * h)
    for y in 0..<h {
        let row = UnsafeRawPointer(data + y * stride).assumingMemoryBound(to: UInt32.self)
        for x in 0..<w { pixels[y * w + x] = row[x] & 0xFF_FFFF }
    }
    return (w, h, pixels)
}
