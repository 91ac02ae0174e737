// The image augmentation layers (Augmentation.swift): gradients by central differences through every
// fill mode and both interpolations, inference passing the image through, draws that depend on the
// sample's position and not on the batch or rank holding it, the draws' ranges, and what each
// transform does to a known image. (Against Keras's own transform_images: AugmentationKerasTests.)

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class AugmentationTests: XCTestCase {
    private let kinds: [(String, Augmentation.Kind, Bool, Augmentation.Fill)] = [
        ("flip", .flip(horizontal: true, vertical: true), true, .reflect),
        ("translate_reflect", .translation(height: -0.3...0.3, width: -0.4...0.2), true, .reflect),
        ("translate_constant", .translation(height: -0.3...0.3, width: -0.4...0.2), true, .constant),
        ("rotate_wrap", .rotation(-0.2...0.2), true, .wrap),
        ("rotate_nearest", .rotation(-0.2...0.2), false, .nearest),
        ("zoom_nearest_fill", .zoom(height: -0.4...0.3, width: nil), true, .nearest),
        ("zoom_nearest_taps", .zoom(height: -0.4...0.3, width: -0.2...0.5), false, .reflect),
        ("contrast", .contrast(lower: 0.3, upper: 0.4, range: -10...10), true, .reflect),
        ("brightness", .brightness(-0.2...0.3, range: -10...10), true, .reflect),
    ]

    private func model(_ kind: Augmentation.Kind, bilinear: Bool, fill: Augmentation.Fill, rows: Int)
        -> (Model, Augmentation)
    {
        let x = InputLayer(name: "x", kind: .features, shape: [5, 4, 2])
        let a = Augmentation(name: "augment", input: x, kind: kind, bilinear: bilinear, fill: fill, fillValue: 0.7)
        return (Model(inputs: [x], outputs: [a], maxBatch: rows), a)
    }

    func testGradientsByCentralDifferences() {
        for (name, kind, bilinear, fill) in kinds {
            let (m, a) = model(kind, bilinear: bilinear, fill: fill, rows: 3)
            m.dropoutKeys.seed = 11
            checkLayer(m, terminal: a, batch: 3, seed: 12)
            XCTAssertFalse(name.isEmpty)
        }
    }

    /// The same image at positions first..<first + rows, forwarded together.
    private let image = (0..<40).map { Float(($0 * 7919) % 97) / 10 }
    private func outputs(_ kind: Augmentation.Kind, rows: Int, first: Int, epoch: Int = 0, training: Bool = true)
        -> [Float]
    {
        let (m, a) = model(kind, bilinear: true, fill: .reflect, rows: rows)
        for r in 0..<rows { (m.inputs[0].output.values + 40 * r).update(from: image, count: 40) }
        m.dropoutKeys.seed = 3
        m.dropoutKeys.epoch = epoch
        m.dropoutKeys.firstPosition = first
        m.forward(batch: rows, training: training)
        return Array(UnsafeBufferPointer(start: a.output.values, count: rows * 40))
    }

    func testDrawsDependOnThePositionNotOnTheBatchOrRankAndInferencePassesThrough() {
        for (name, kind, _, _) in kinds {
            // Positions 0..<8 at once, and as two "ranks" of 4: the same outputs.
            let whole = outputs(kind, rows: 8, first: 0)
            XCTAssertEqual(whole, outputs(kind, rows: 4, first: 0) + outputs(kind, rows: 4, first: 4), name)
            XCTAssertGreaterThan(
                Set((0..<8).map { Array(whole[(40 * $0)..<(40 * $0 + 40)]) }).count, 1, "\(name): samples differ")
            XCTAssertNotEqual(whole, outputs(kind, rows: 8, first: 0, epoch: 1), "\(name): a new epoch, new draws")
            XCTAssertEqual(
                outputs(kind, rows: 2, first: 0, training: false), image + image, "\(name): inference passes through")
        }
    }

    func testDrawsStayInKerassRanges() {
        let (m, rotation) = model(.rotation(-0.1...0.25), bilinear: true, fill: .reflect, rows: 1)
        m.dropoutKeys.seed = 5
        let angles = (0..<400).map { rotation.draws(position: $0)[0] }
        XCTAssertGreaterThanOrEqual(angles.min()!, -36)
        XCTAssertLessThanOrEqual(angles.max()!, 90)
        XCTAssertLessThan(angles.min()!, -30, "the draws cover the range")
        XCTAssertGreaterThan(angles.max()!, 84)
        let (m2, flip) = model(.flip(horizontal: true, vertical: false), bilinear: true, fill: .reflect, rows: 1)
        m2.dropoutKeys.seed = 5
        let flipped = (0..<1000).filter { flip.draws(position: $0)[0] == 1 }.count
        XCTAssertEqual(Double(flipped), 500, accuracy: 5 * 250.0.squareRoot())
        let (m3, contrast) = model(
            .contrast(lower: 0, upper: 0.2, range: 0...255), bilinear: true, fill: .reflect, rows: 1)
        m3.dropoutKeys.seed = 5
        let factors = (0..<400).map { contrast.draws(position: $0)[0] }
        XCTAssertTrue(factors.allSatisfy { (1...1.2).contains($0) }, "Keras's factor 0.2: drawn in [1, 1.2]")
    }

    func testWhatEachTransformDoesToAKnownImage() {
        // One channel, 3 × 3 holding 0…8: a horizontal flip reverses the rows' order of columns.
        let x = InputLayer(name: "x", kind: .features, shape: [3, 3, 1])
        let image = (0..<9).map(Float.init)
        func run(_ kind: Augmentation.Kind, fill: Augmentation.Fill = .constant, bilinear: Bool = true, seed: UInt64)
            -> ([Float], [Float])
        {
            let a = Augmentation(name: "a", input: x, kind: kind, bilinear: bilinear, fill: fill, fillValue: -1)
            let m = Model(inputs: [x], outputs: [a], maxBatch: 1)
            x.output.values.update(from: image, count: 9)
            m.dropoutKeys.seed = seed
            m.forward(batch: 1, training: true)
            return (Array(UnsafeBufferPointer(start: a.output.values, count: 9)), a.draws(position: 0))
        }
        let seed = (0..<50).first { s in run(.flip(horizontal: true, vertical: false), seed: UInt64(s)).1 == [1] }!
        XCTAssertEqual(
            run(.flip(horizontal: true, vertical: false), seed: UInt64(seed)).0, [2, 1, 0, 5, 4, 3, 8, 7, 6])
        XCTAssertEqual(run(.flip(horizontal: true, vertical: true), seed: UInt64(seed)).0, [8, 7, 6, 5, 4, 3, 2, 1, 0])
        // A quarter turn (factor ¼ exactly): the output at (x, y) reads the input at (cx + (y−cy)·…): a
        // rotation of the grid, every value kept (nearest taps, no fill needed).
        let (turned, angle) = run(.rotation(0.25...0.25), bilinear: false, seed: 1)
        XCTAssertEqual(angle, [90])
        XCTAssertEqual(turned.sorted(), image)
        XCTAssertEqual(turned[4], 4, "the centre stays")
        XCTAssertNotEqual(turned, image)
        // Translation by a whole column right (width factor ⅓ exactly), constant fill −1 on the left.
        let (moved, shift) = run(.translation(height: 0...0, width: (1.0 / 3)...(1.0 / 3)), seed: 1)
        XCTAssertEqual(shift[0], 1, accuracy: 1e-6)
        XCTAssertEqual(moved.map { ($0 * 1e4).rounded() / 1e4 }, [-1, 0, 1, -1, 3, 4, -1, 6, 7])
        // Brightness +0.5 of the range [0, 8]: +4, clipped at 8.
        let (bright, delta) = run(.brightness(0.5...0.5, range: 0...8), seed: 1)
        XCTAssertEqual(delta, [4])
        XCTAssertEqual(bright, [4, 5, 6, 7, 8, 8, 8, 8, 8])
        // Contrast ×1.5 about the mean 4, clipped to [0, 8].
        let (contrasted, _) = run(.contrast(lower: 0, upper: 0.5, range: 0...8), seed: 1)
        let f = run(.contrast(lower: 0, upper: 0.5, range: 0...8), seed: 1).1[0]
        XCTAssertEqual(contrasted, image.map { min(max(($0 - 4) * f + 4, 0), 8) })
    }

    func testRandomCropIsRefusedWithKerassReason() throws {
        let json =
            #"{"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "m", "layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "image", "batch_shape": [null, 6, 5, 3], "dtype": "float32"}, "name": "image", "inbound_nodes": []}, {"module": "keras.layers", "class_name": "RandomCrop", "config": {"name": "crop", "height": 4, "width": 3}, "name": "crop", "inbound_nodes": [[["image", 0, 0, {}]]]}], "input_layers": [["image", 0, 0]], "output_layers": [["crop", 0, 0]]}}"#
        let d = try KerasConfig.description(fromJSON: Array(json.utf8), source: "test")
        XCTAssertThrowsError(try d.build(maxBatch: 2)) {
            XCTAssertTrue("\($0)".contains("layer 'crop' (RandomCrop)"), "\($0)")
            XCTAssertTrue("\($0)".contains("unchanged in inference"), "\($0)")
        }
    }
}
