// Part of what OptimizerTests.swift's header describes.

import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

/// Each schedule at chosen steps against the value worked out by hand from Keras's formula.
final class LearningRateScheduleTests: XCTestCase {
    private func check(
        _ s: LearningRateSchedule, _ cases: [(Int, Double)], file: StaticString = #filePath, line: UInt = #line
    ) {
        for (step, expected) in cases {
            XCTAssertEqual(
                Double(s.value(at: step)), expected, accuracy: 1e-6 * max(1, expected),
                "\(s.className) at step \(step)", file: file, line: line)
        }
    }

    func testEverySchedule() {
        check(
            .exponentialDecay(initial: 0.1, decaySteps: 10, decayRate: 0.5, staircase: false),
            [(0, 0.1), (5, 0.1 * 0.5.squareRoot()), (20, 0.025)])
        check(.exponentialDecay(initial: 0.1, decaySteps: 10, decayRate: 0.5, staircase: true), [(9, 0.1), (15, 0.05)])
        check(.inverseTimeDecay(initial: 0.1, decaySteps: 4, decayRate: 0.5, staircase: false), [(0, 0.1), (2, 0.08)])
        check(
            .inverseTimeDecay(initial: 0.1, decaySteps: 4, decayRate: 0.5, staircase: true), [(3, 0.1), (6, 0.1 / 1.5)])
        check(
            .piecewiseConstantDecay(boundaries: [3, 6], values: [1, 0.5, 0.1]),
            [(0, 1), (3, 1), (4, 0.5), (6, 0.5), (7, 0.1), (1000, 0.1)])
        check(
            .polynomialDecay(initial: 0.1, decaySteps: 10, end: 0.01, power: 2, cycle: false),
            [(0, 0.1), (5, 0.0325), (10, 0.01), (20, 0.01)])
        check(
            .polynomialDecay(initial: 0.1, decaySteps: 10, end: 0.01, power: 2, cycle: true),
            [(0, 0.1), (15, 0.015625)])
        check(
            .cosineDecay(initial: 0.1, decaySteps: 10, alpha: 0.1, warmupTarget: nil, warmupSteps: 0),
            [(0, 0.1), (5, 0.055), (10, 0.01), (20, 0.01)])
        check(
            .cosineDecay(initial: 0, decaySteps: 10, alpha: 0.1, warmupTarget: 1, warmupSteps: 4),
            [(0, 0), (2, 0.5), (4, 1), (9, 0.55), (100, 0.1)])
        check(
            .cosineDecayRestarts(initial: 0.1, firstDecaySteps: 4, tMul: 2, mMul: 0.5, alpha: 0),
            [(0, 0.1), (2, 0.05), (4, 0.05), (8, 0.025)])
        check(
            .cosineDecayRestarts(initial: 0.1, firstDecaySteps: 4, tMul: 1, mMul: 0.5, alpha: 0),
            [(4, 0.05), (6, 0.025)])
    }

    func testKerasConfigsLoadAndBadOnesAreRefused() throws {
        let ok = try JSONValue.parse(
            Array(
                #"{"module": "keras.optimizers.schedules", "class_name": "CosineDecay", "config": {"initial_learning_rate": 0.001, "decay_steps": 6, "alpha": 0.1, "name": "CosineDecay", "warmup_target": 0.005, "warmup_steps": 3}, "registered_name": null}"#
                    .utf8))
        let s = try LearningRateSchedule.keras(ok)
        XCTAssertEqual(s, .cosineDecay(initial: 0.001, decaySteps: 6, alpha: 0.1, warmupTarget: 0.005, warmupSteps: 3))
        XCTAssertEqual(try LearningRateSchedule.keras(s.kerasConfig), s, "written as it is read")
        let bad: [(String, String)] = [
            (
                #"{"class_name": "OneCycle", "config": {}}"#,
                "OneCycle is not supported (ExponentialDecay, InverseTimeDecay"
            ),
            (
                #"{"class_name": "ExponentialDecay", "config": {"initial_learning_rate": -0.1, "decay_steps": 3, "decay_rate": 0.5}}"#,
                "initial_learning_rate = -0.1"
            ),
            (
                #"{"class_name": "PiecewiseConstantDecay", "config": {"boundaries": [3], "values": [0.1]}}"#,
                "one more value than boundaries"
            ),
            (
                #"{"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1, "decay_steps": 0}}"#,
                "decay_steps = 0.0"
            ),
        ]
        for (text, expected) in bad {
            XCTAssertThrowsError(try LearningRateSchedule.keras(JSONValue.parse(Array(text.utf8)))) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
    }
}
