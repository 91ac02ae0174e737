// Image files (ImageFile.swift, ImageColumn.swift; docs/SPEC.md §14, §12): PNG and JPEG decode to
// the pixels written, resizing is TensorFlow's half-pixel bilinear, headers claiming huge sizes are
// refused before any buffer exists, truncated and corrupt files are messages, and a few hundred
// mutated images and CSVs decode or fail without a crash. (Pixels against Pillow's and the resize
// against JAX's: ImageFileCLITests.)

import CPNG
import CTurboJPEG
import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

/// An 8-bit PNG of `pixels` (libpng's simplified writer).
func encodePNG(_ pixels: [UInt8], width: Int, height: Int, channels: Int) -> [UInt8] {
    var image = png_image()
    image.version = 1
    image.width = UInt32(width)
    image.height = UInt32(height)
    image.format = channels == 1 ? 0 : channels == 3 ? 2 : 3
    var size = 0
    _ = png_image_write_to_memory(&image, nil, &size, 0, pixels, 0, nil)
    var out = [UInt8](repeating: 0, count: size)
    let ok = png_image_write_to_memory(&image, &out, &size, 0, pixels, 0, nil)
    precondition(ok != 0)
    return Array(out.prefix(size))
}

/// A baseline JPEG of RGB `pixels` (TurboJPEG), 4:4:4 at `quality`.
func encodeJPEG(_ pixels: [UInt8], width: Int, height: Int, quality: Int32 = 95) -> [UInt8] {
    let handle = tjInitCompress()!
    defer { tjDestroy(handle) }
    var buffer: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let status = tjCompress2(
        handle, pixels, Int32(width), 0, Int32(height), TJPF_RGB.rawValue, &buffer, &size, Int32(TJSAMP_444.rawValue),
        quality, 0)
    precondition(status == 0)
    defer { tjFree(buffer) }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
}

final class ImageFileTests: XCTestCase {
    private func decode(_ bytes: [UInt8], channels: Int = 3) throws(ImageProblem) -> ImageFile.Decoded {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { copy.deallocate() }
        copy.copyBytes(from: bytes)
        return try ImageFile.decode(UnsafeRawBufferPointer(rebasing: copy[0..<bytes.count]), channels: channels)
    }

    private func problem(_ bytes: [UInt8], channels: Int = 3) -> String? {
        do {
            _ = try decode(bytes, channels: channels)
            return nil
        } catch { return error.message }
    }

    private func pattern(_ width: Int, _ height: Int, _ channels: Int) -> [UInt8] {
        (0..<(width * height * channels)).map { UInt8(($0 * 37 + $0 / 7) % 256) }
    }

    func testPNGAndJPEGDecodeToTheirPixels() throws {
        let rgb = pattern(5, 4, 3)
        let png = try decode(encodePNG(rgb, width: 5, height: 4, channels: 3))
        XCTAssertEqual([png.height, png.width, png.channels], [4, 5, 3])
        XCTAssertEqual(png.pixels, rgb)
        // Gray is replicated into RGB; RGBA read as RGBA keeps its alpha.
        let gray = pattern(3, 2, 1)
        XCTAssertEqual(
            try decode(encodePNG(gray, width: 3, height: 2, channels: 1)).pixels, gray.flatMap { [$0, $0, $0] })
        let rgba = pattern(3, 2, 4)
        XCTAssertEqual(try decode(encodePNG(rgba, width: 3, height: 2, channels: 4), channels: 4).pixels, rgba)
        // A smooth JPEG at quality 100 decodes to within a few levels of what was written.
        let smooth: [UInt8] = (0..<(16 * 8 * 3)).map { (i: Int) -> UInt8 in UInt8((i / 3 % 16) * 8 + (i % 3) * 20) }
        let jpeg = try decode(encodeJPEG(smooth, width: 16, height: 8, quality: 100))
        XCTAssertEqual([jpeg.height, jpeg.width, jpeg.channels], [8, 16, 3])
        XCTAssertLessThanOrEqual(zip(jpeg.pixels, smooth).map { abs(Int($0) - Int($1)) }.max()!, 3)
        // JPEG into 4 channels: alpha 255.
        let four = try decode(encodeJPEG(smooth, width: 16, height: 8, quality: 100), channels: 4)
        XCTAssertTrue(stride(from: 3, to: four.pixels.count, by: 4).allSatisfy { four.pixels[$0] == 255 })
    }

    func testResizeIsTensorFlowsHalfPixelBilinear() {
        // One row 2 → 4 (up): TF's weights give a, a + ¼(b − a), a + ¾(b − a), b.
        let up = ImageFile.Decoded(height: 1, width: 2, channels: 1, pixels: [10, 50])
        var out = [Float](repeating: 0, count: 4)
        ImageFile.resize(up, height: 1, width: 4, into: &out)
        XCTAssertEqual(out, [10, 20, 40, 50])
        // 4 × 4 → 2 × 2 (down, no antialiasing): each output is its 2 × 2 block's mean (centres at 0.5, 2.5).
        let down = ImageFile.Decoded(height: 4, width: 4, channels: 1, pixels: (0..<16).map { UInt8($0 * 10) })
        var small = [Float](repeating: 0, count: 4)
        ImageFile.resize(down, height: 2, width: 2, into: &small)
        XCTAssertEqual(small, [25, 45, 105, 125])
        // 3 → 2 in rows, channels kept apart: x = (o + ½)·1.5 − ½ = 0.25, 1.75.
        let odd = ImageFile.Decoded(height: 3, width: 1, channels: 2, pixels: [0, 100, 40, 60, 80, 20])
        var two = [Float](repeating: 0, count: 4)
        ImageFile.resize(odd, height: 2, width: 1, into: &two)
        XCTAssertEqual(two[0], 0 + 0.25 * 40, accuracy: 1e-5)
        XCTAssertEqual(two[1], 100 - 0.25 * 40, accuracy: 1e-5)
        XCTAssertEqual(two[2], 40 + 0.75 * 40, accuracy: 1e-5)
        XCTAssertEqual(two[3], 60 - 0.75 * 40, accuracy: 1e-5)
    }

    /// CRC-32 (PNG's chunk check), bit by bit.
    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    private func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    func testHeadersClaimingHugeImagesAreRefusedBeforeAnyBuffer() {
        // A well-formed PNG header (valid CRC) claiming 100000 × 100000, then an empty IDAT.
        func png(width: UInt32, height: UInt32) -> [UInt8] {
            let ihdr: [UInt8] = Array("IHDR".utf8) + bigEndian(width) + bigEndian(height) + [8, 2, 0, 0, 0]
            return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + bigEndian(13) + ihdr + bigEndian(crc32(ihdr))
                + bigEndian(0) + Array("IDAT".utf8) + bigEndian(crc32(Array("IDAT".utf8)))
        }
        let huge = problem(png(width: 100_000, height: 100_000)) ?? "decoded"
        XCTAssertTrue(huge.contains("claims 100000 × 100000"), huge)
        // Within the limits, but far more than 45 bytes can hold.
        let large = problem(png(width: 8000, height: 8000)) ?? "decoded"
        XCTAssertTrue(large.contains("more than its 45 bytes can hold"), large)
        // A real JPEG whose frame header (SOF0) is edited to 65000 × 65000.
        var jpeg = encodeJPEG(pattern(8, 8, 3), width: 8, height: 8)
        let sof = (0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }!
        for k in 5...8 { jpeg[sof + k] = k % 2 == 1 ? 0xFD : 0xE8 }
        XCTAssertTrue(problem(jpeg)!.contains("claims 65000 × 65000"), problem(jpeg) ?? "decoded")
    }

    func testTruncatedCorruptAndForeignFilesAreMessages() {
        let png = encodePNG(pattern(9, 7, 3), width: 9, height: 7, channels: 3)
        XCTAssertTrue(problem(Array(png.prefix(png.count / 2)))!.contains("corrupt or truncated PNG"))
        let jpeg = encodeJPEG(pattern(16, 16, 3), width: 16, height: 16)
        XCTAssertTrue(problem(Array(jpeg.prefix(jpeg.count * 2 / 3)))!.contains("truncated JPEG"))
        XCTAssertTrue(problem(Array("GIF89a".utf8) + [0, 0])!.contains("not a PNG or JPEG"))
        XCTAssertTrue(problem([0x89, 0x50])!.contains("not a PNG or JPEG"))
    }

    func testMutatedImagesDecodeOrFailWithoutACrash() {
        let bases = [
            encodePNG(pattern(12, 9, 3), width: 12, height: 9, channels: 3),
            encodePNG(pattern(7, 5, 1), width: 7, height: 5, channels: 1),
            encodeJPEG(pattern(16, 12, 3), width: 16, height: 12),
        ]
        var rng = SeededGenerator(seed: 77)
        var failed = 0
        for i in 0..<300 {
            var bytes = bases[i % bases.count]
            for _ in 0..<(1 + rng.below(8)) {
                switch rng.below(4) {
                case 0: bytes[rng.below(bytes.count)] = UInt8(rng.below(256))  // anywhere, headers included
                case 1 where bytes.count > 9:  // near the header
                    bytes[8 + rng.below(min(40, bytes.count - 8))] ^= UInt8(1 << rng.below(8))
                case 2: bytes = Array(bytes.prefix(1 + rng.below(bytes.count)))
                default: bytes.insert(UInt8(rng.below(256)), at: rng.below(bytes.count))
                }
            }
            if problem(bytes, channels: [1, 3, 4][i % 3]) != nil { failed += 1 }
        }
        XCTAssertGreaterThan(failed, 100, "the mutations reach the decoders' error paths")
    }

    /// A model with an image input [4, 3, 3] and a class head, and a folder with a CSV naming images.
    private func imageFolder() throws -> (ModelDescription, String) {
        let json =
            #"{"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "m", "layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "image", "batch_shape": [null, 4, 3, 3], "dtype": "float32"}, "name": "image", "inbound_nodes": []}, {"module": "keras.layers", "class_name": "Flatten", "config": {"name": "flat"}, "name": "flat", "inbound_nodes": [[["image", 0, 0, {}]]]}, {"module": "keras.layers", "class_name": "Dense", "config": {"name": "kind", "units": 2, "activation": "softmax"}, "name": "kind", "inbound_nodes": [[["flat", 0, 0, {}]]]}], "input_layers": [["image", 0, 0]], "output_layers": [["kind", 0, 0]]}, "compile_config": {"loss": "sparse_categorical_crossentropy", "optimizer": "sgd"}}"#
        let d = try KerasConfig.description(fromJSON: Array(json.utf8), source: "test")
        let dir = temporaryDirectory("images")
        try FileManager.default.createDirectory(atPath: dir + "/pics", withIntermediateDirectories: true)
        try Data(encodePNG(pattern(3, 4, 3), width: 3, height: 4, channels: 3)).write(
            to: URL(fileURLWithPath: dir + "/pics/a.png"))
        try Data(encodeJPEG(pattern(6, 8, 3), width: 6, height: 8)).write(to: URL(fileURLWithPath: dir + "/pics/b.jpg"))
        try Data(encodePNG(pattern(5, 5, 1), width: 5, height: 5, channels: 1)).write(
            to: URL(fileURLWithPath: dir + "/pics/c.png"))
        return (d, dir)
    }

    private func open(_ csv: String, _ d: ModelDescription) throws -> Dataset {
        let files = try DataFiles.open(csv, for: d, communicator: LocalCommunicator())
        let model = try d.build(maxBatch: 4)
        let data = try Dataset(files: files, model: model, heads: d.heads)
        if let problem = data.validate(rows: 0..<data.count) { throw problem }
        return data
    }

    func testImageColumnsDecodeResizeAndRefuseUntrustedPaths() throws {
        let (d, dir) = try imageFolder()
        let csv = dir + "/data.csv"
        try "image,kind\npics/a.png,0\npics/b.jpg,1\npics/c.png,1\n".write(
            toFile: csv, atomically: true, encoding: .utf8)
        let data = try open(csv, d)
        XCTAssertEqual(data.inputs[0].shape, [3, 4, 3, 3])
        var row = [Float](repeating: 0, count: 36)
        data.inputs[0].readFloats(row: 0, into: &row)
        XCTAssertEqual(row, pattern(3, 4, 3).map(Float.init), "the size of the input: the pixels as they are")
        data.prefetch([2, 1])
        data.inputs[0].readFloats(row: 1, into: &row)  // 8 × 6 → 4 × 3: the means of 2 × 2 blocks
        let b = try decode(encodeJPEG(pattern(6, 8, 3), width: 6, height: 8))
        let mean = (Float(b.pixels[0]) + Float(b.pixels[3]) + Float(b.pixels[18]) + Float(b.pixels[21])) / 4
        XCTAssertEqual(row[0], mean, accuracy: 1e-4)
        try data.checkLoaded()
        // Untrusted paths: each a message naming the CSV line and the file.
        try FileManager.default.createDirectory(atPath: dir + "/../outside", withIntermediateDirectories: true)
        try Data(encodePNG(pattern(3, 4, 3), width: 3, height: 4, channels: 3)).write(
            to: URL(fileURLWithPath: dir + "/../outside/x.png"))
        try FileManager.default.createSymbolicLink(
            atPath: dir + "/pics/link.png", withDestinationPath: dir + "/../outside/x.png")
        for (cell, expected) in [
            ("/etc/hostname", "absolute path"), ("pics/../../outside/x.png", "leaves the CSV's folder"),
            ("pics/link.png", "outside the CSV's folder"), ("pics/none.png", "pics/none.png: file not found"),
        ] {
            try "image,kind\npics/a.png,0\n\(cell),1\n".write(toFile: csv, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try open(csv, d), cell) {
                XCTAssertTrue("\($0)".contains("line 3"), "\($0)")
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
    }

    func testMutatedCSVsOpenOrFailWithoutACrash() throws {
        let (d, dir) = try imageFolder()
        let csv = dir + "/data.csv"
        let base = Array("image,kind\npics/a.png,0\npics/b.jpg,1\npics/c.png,1\n".utf8)
        let pieces = ["..", "/", ",", "\"", "\n", "pics/", "a.png", "\u{0}", " ", "\\", "%", "1e9"].map {
            Array($0.utf8)
        }
        var rng = SeededGenerator(seed: 78)
        var opened = 0
        for _ in 0..<150 {
            var text = base
            for _ in 0..<(1 + rng.below(3)) {
                let at = rng.below(text.count)
                switch rng.below(3) {
                case 0: text.insert(contentsOf: pieces[rng.below(pieces.count)], at: at)
                case 1: text.remove(at: at)
                default: text[at] = UInt8(rng.below(128))
                }
            }
            try Data(text).write(to: URL(fileURLWithPath: csv))
            if (try? open(csv, d)) != nil { opened += 1 }
        }
        XCTAssertGreaterThan(opened, 0)
        XCTAssertLessThan(opened, 150)
    }
}
