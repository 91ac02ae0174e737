// --monitor's expression, its inferred direction and Keras's EarlyStopping
// rules on hand-made sequences (the CLI test compares with Keras itself).

import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class MonitorTests: XCTestCase {
    func testExpressions() throws {
        let e = try MonitorExpression.parse("0.7*val_main_output_accuracy + 0.3 * val_aux_output_accuracy")
        XCTAssertEqual(e.terms.map(\.coefficient), [0.7, 0.3])
        XCTAssertEqual(e.terms.map(\.name), ["val_main_output_accuracy", "val_aux_output_accuracy"])
        XCTAssertEqual(e.value(["val_main_output_accuracy": 0.5, "val_aux_output_accuracy": 1]), 0.7 * 0.5 + 0.3)
        XCTAssertNil(e.value(["val_main_output_accuracy": 0.5]), "a missing figure gives no value")
        XCTAssertNil(e.value(["val_main_output_accuracy": .nan, "val_aux_output_accuracy": 1]), "nor does a NaN")
        let f = try MonitorExpression.parse("-loss-1e-3*val_x_loss+2e+1*acc")
        XCTAssertEqual(f.terms.map(\.coefficient), [-1, -1e-3, 20])
        XCTAssertEqual(f.terms.map(\.name), ["loss", "val_x_loss", "acc"])
        for bad in ["", "0.5*", "a+", "x*y*z", "2*3", "val-loss*", "loss;rm"] {
            XCTAssertThrowsError(try MonitorExpression.parse(bad), bad) {
                XCTAssertTrue("\($0)".contains("--monitor"), "\($0)")
            }
        }
    }

    func testInferredMode() throws {
        var head = Head(
            output: "main", loss: .binaryCrossentropy, weight: 1, accuracy: .init(name: "accuracy", kind: .binary))
        head.metrics = [
            Metric(name: "mae", kind: .meanAbsoluteError, keras: "\"mae\""),
            Metric(
                name: "auc", kind: .auc(curve: .roc, thresholds: 200, summation: .interpolation, fromLogits: false),
                keras: "\"auc\""),
        ]
        func mode(_ s: String) throws -> MonitorOptions.Mode? {
            MonitorOptions.inferredMode(try MonitorExpression.parse(s), heads: [head])
        }
        XCTAssertEqual(try mode("val_loss"), .min)
        XCTAssertEqual(try mode("main_loss"), .min)
        XCTAssertEqual(try mode("val_main_accuracy"), .max)
        XCTAssertEqual(try mode("0.5*val_main_accuracy+0.5*main_auc"), .max)
        XCTAssertEqual(try mode("val_main_mae"), .min)
        XCTAssertEqual(try mode("val_loss-val_main_accuracy"), .min, "a negative coefficient turns a term round")
        XCTAssertNil(try mode("val_loss+val_main_accuracy"), "mixed directions need --mode")
        XCTAssertNil(try mode("learning_rate"))
    }

    /// Keras's EarlyStopping by hand: the first value is the best; strictly better resets wait;
    /// stop once wait ≥ patience, never after the first epoch.
    func testEarlyStoppingRules() {
        func run(_ values: [Double?], _ mode: MonitorOptions.Mode, patience: Int?) -> (
            stoppedAfter: Int?, best: Int, improved: [Bool]
        ) {
            var state = MonitorState()
            var improved: [Bool] = []
            for (e, v) in values.enumerated() {
                improved.append(state.update(v, epoch: e + 1, mode: mode))
                if state.shouldStop(patience: patience, epoch: e + 1) { return (e + 1, state.bestEpoch, improved) }
            }
            return (nil, state.bestEpoch, improved)
        }
        let a = run([0.5, 0.4, 0.45, 0.41, 0.39], .min, patience: 2)
        XCTAssertEqual(a.stoppedAfter, 4)
        XCTAssertEqual(a.best, 2)
        XCTAssertEqual(a.improved, [true, true, false, false])
        XCTAssertEqual(run([0.5, 0.4, 0.45, 0.41, 0.39], .min, patience: 3).best, 5)
        XCTAssertEqual(run([0.5, 0.4, 0.45, 0.41, 0.39], .min, patience: nil).stoppedAfter, nil)
        XCTAssertEqual(run([0.5, 0.5], .min, patience: 1).stoppedAfter, 2, "equal is no improvement")
        XCTAssertEqual(run([0.5], .min, patience: 0).stoppedAfter, nil, "never after the first epoch")
        XCTAssertEqual(run([0.5, 0.6], .min, patience: 0).stoppedAfter, 2)
        let b = run([0.6, 0.7, 0.65, 0.7], .max, patience: 2)
        XCTAssertEqual(b.stoppedAfter, 4)
        XCTAssertEqual(b.best, 2)
        let c = run([nil, 0.5, nil, 0.6, 0.7], .min, patience: 2)
        XCTAssertEqual(c.best, 2, "an epoch without a value neither improves nor waits")
        XCTAssertEqual(c.stoppedAfter, 5)
    }
}
