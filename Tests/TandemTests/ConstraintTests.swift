// Weight constraints (Constraint.swift) against Keras's formulas by hand, read from Keras's
// serialized objects, refused when unknown, and applied by the optimizer after the update.

import Foundation
import XCTest

@testable import TandemCore

final class ConstraintTests: XCTestCase {
    private func applied(_ kind: WeightConstraint.Kind, axes: [Int] = [0], _ w: [Float], shape: [Int]) -> [Float] {
        var w = w
        w.withUnsafeMutableBufferPointer {
            WeightConstraint(tensor: "t", kind: kind, axes: axes).apply($0.baseAddress!, shape: shape)
        }
        return w
    }

    func testValuesByKerasFormulas() {
        // A [2, 2] kernel: column norms (axis 0) 5 and 0.5; row norms (axis 1) √(9 + 0.09), √(16 + 0.16).
        let w: [Float] = [3, 0.3, 4, 0.4]
        let e: Float = 1e-7
        XCTAssertEqual(
            applied(.maxNorm(2), w, shape: [2, 2]),
            [3 * 2 / (e + 5), 0.3 * 0.5 / (e + 0.5), 4 * 2 / (e + 5), 0.4 * 0.5 / (e + 0.5)])
        XCTAssertEqual(
            applied(.unitNorm, w, shape: [2, 2]), [3 / (e + 5), 0.3 / (e + 0.5), 4 / (e + 5), 0.4 / (e + 0.5)])
        let rows = applied(.maxNorm(1), axes: [1], w, shape: [2, 2])
        XCTAssertEqual(rows[0], 3 / (e + (9.09 as Float).squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(rows[3], 0.4 / (e + (16.16 as Float).squareRoot()), accuracy: 1e-6)
        // MinMaxNorm(1, 2, rate 0.5): column 5 → desired 0.5·2 + 0.5·5; column 0.5 → 0.5·1 + 0.5·0.5.
        let mm = applied(.minMaxNorm(min: 1, max: 2, rate: 0.5), w, shape: [2, 2])
        XCTAssertEqual(mm[0], 3 * 3.5 / (e + 5), accuracy: 1e-6)
        XCTAssertEqual(mm[1], 0.3 * 0.75 / (e + 0.5), accuracy: 1e-6)
        XCTAssertEqual(applied(.nonNeg, [-1, 2, -0, 0.5], shape: [4]), [0, 2, 0, 0.5])
    }

    func testKerasObjectsAreReadOrRefused() throws {
        let maxNorm = try JSONValue.parse(
            Array(
                #"{"module": "keras.constraints", "class_name": "MaxNorm", "config": {"max_value": 0.6, "axis": 0}}"#
                    .utf8))
        XCTAssertEqual(
            try WeightConstraint.keras(maxNorm, tensor: "d/kernel", key: "kernel_constraint")?.kind, .maxNorm(0.6))
        XCTAssertNil(try WeightConstraint.keras(.null, tensor: "d/kernel", key: "kernel_constraint"))
        let custom = try JSONValue.parse(Array(#"{"class_name": "Clip", "config": {}}"#.utf8))
        XCTAssertThrowsError(try WeightConstraint.keras(custom, tensor: "d/kernel", key: "kernel_constraint")) {
            XCTAssertTrue(
                "\($0)".contains("'kernel_constraint' Clip is not supported (MaxNorm, MinMaxNorm, UnitNorm, NonNeg)"),
                "\($0)")
        }
    }

    func testTheOptimizerProjectsAfterTheUpdate() throws {
        let store = ParameterStore(specs: [
            ParameterSpec(layer: "d", weight: "kernel", shape: [2, 1], initializer: .zeros),
            ParameterSpec(layer: "d", weight: "bias", shape: [1], initializer: .zeros),
        ])
        store.values.update(from: [3, 4, -1], count: 3)
        let optimizer = Optimizer(OptimizerConfig(kind: .sgd, learningRate: 1), parameters: store)
        try optimizer.constrain(
            [WeightConstraint(tensor: "d/kernel", kind: .unitNorm), WeightConstraint(tensor: "d/bias", kind: .nonNeg)],
            in: store)
        var g: [Float] = [-3, -4, 0.5]  // w ← w − g = [6, 8, −1.5], then projected
        optimizer.step(parameters: store.values, gradients: &g)
        XCTAssertEqual(store.values[0], 6 / (1e-7 + 10), accuracy: 1e-7)
        XCTAssertEqual(store.values[1], 8 / (1e-7 + 10), accuracy: 1e-7)
        XCTAssertEqual(store.values[2], 0)
        XCTAssertThrowsError(try optimizer.constrain([WeightConstraint(tensor: "x/kernel", kind: .nonNeg)], in: store))
    }
}
