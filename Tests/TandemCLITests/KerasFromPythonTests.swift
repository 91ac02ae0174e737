// scripts/tandem_keras.py: a Keras user's `model.fit(...)` becomes
// `tandem_keras.fit(model, ...)`. At 1 and 2 ranks the model it hands back has
// the weights `tandem train` gives on the same archive and data, the model
// passed in holds them too, and the history has every head's loss; bad
// arguments raise Python exceptions that name the argument.

import Foundation
import Tandem
import XCTest

final class KerasFromPythonTests: KerasFixtureTestCase {
    private func python(_ code: String, _ args: [String] = []) throws -> RunResult {
        try Harness.run(
            f.python, ["-c", code] + args, timeout: 600,
            environment: [
                "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONPATH": Harness.packageRoot + "/scripts", "TANDEM_BIN": Harness.binary,
            ])
    }

    func testFitFromPythonEqualsTandemTrainAtOneAndTwoRanks() throws {
        let m = "headline"
        let reference = try Harness.weights(try tandemTrain(model(m), m, epochs: 2) + "/weights.safetensors")
        for ranks in [1, 2] {
            let run = dir + "/py-\(ranks)"
            let out = dir + "/py-\(ranks)-model.safetensors"
            let code = """
                import json, os, sys, numpy as np, keras, tandem_keras
                from keras_models import weights_of, write_safetensors
                archive, data, run, out, ranks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
                model = keras.saving.load_model(archive)
                load = lambda n: np.load(os.path.join(data, n + ".npy"))
                x = {"main_input": load("main_input"), "aux_input": load("aux_input")}
                y = [load("main_output"), load("aux_output")]
                w = {"main_output": load("main_output.sample_weight")}
                history = tandem_keras.fit(model, x, y, sample_weight=w, batch_size=8, epochs=2, ranks=ranks,
                                           run_dir=run, no_shuffle=True, verbose=False)
                write_safetensors(out, weights_of(model))
                trained, h = history
                assert h is history.history and trained is history.model
                same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained.get_weights()))
                print(json.dumps({"keys": sorted(history.history), "epochs": history.epoch, "same": same}))
                """
            let r = try python(code, [model(m), data(m), run, out, "\(ranks)"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let result =
                try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8))
                as! [String: Any]
            let keys = result["keys"] as! [String]
            for key in ["loss", "main_output_loss", "aux_output_loss", "main_output_accuracy", "aux_output_accuracy"] {
                XCTAssertTrue(keys.contains(key), "ranks \(ranks): history has \(key): \(keys)")
            }
            XCTAssertEqual(result["epochs"] as? [Int], [0, 1])
            XCTAssertEqual(result["same"] as? Bool, true, "the model passed in holds the trained weights")
            let tolerance: Float = ranks == 1 ? 0 : self.tolerance
            assertClose(
                try Harness.weights(out), reference, tolerance == 0 ? 1e-30 : tolerance,
                "ranks \(ranks): tandem_keras.fit against tandem train")
        }
    }

    /// pandas DataFrames for x and y, columns named as in a CSV dataset (`main_input_0 …`, `main_output`),
    /// train to the same bytes as the arrays they hold.
    func testFitTakesDataFramesNamedAsCSVColumns() throws {
        let m = "headline"
        let reference = try Harness.weights(try tandemTrain(model(m), m, epochs: 2) + "/weights.safetensors")
        let out = dir + "/frame-model.safetensors"
        let code = """
            import os, sys, numpy as np, pandas as pd, keras, tandem_keras
            from keras_models import weights_of, write_safetensors
            archive, data, run, out = sys.argv[1:5]
            model = keras.saving.load_model(archive)
            load = lambda n: np.load(os.path.join(data, n + ".npy"))
            def frame(arrays):
                columns = {}
                for name, a in arrays.items():
                    a = a.reshape(len(a), -1)
                    if a.shape[1] == 1:
                        columns[name] = a[:, 0]
                    else:
                        columns.update({f"{name}_{k}": a[:, k] for k in range(a.shape[1])})
                return pd.DataFrame(columns)
            x = frame({"aux_input": load("aux_input"), "main_input": load("main_input")})
            y = frame({"aux_output": load("aux_output"), "main_output": load("main_output")})
            w = {"main_output": load("main_output.sample_weight")}
            tandem_keras.fit(model, x, y, sample_weight=w, batch_size=8, epochs=2, run_dir=run,
                             no_shuffle=True, verbose=False)
            write_safetensors(out, weights_of(model))
            """
        let r = try python(code, [model(m), data(m), dir + "/frame-run", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        assertClose(try Harness.weights(out), reference, 1e-30, "DataFrames against tandem train on the arrays")
    }

    func testBadArgumentsRaiseExceptionsNamingThem() throws {
        let code = """
            import os, sys, numpy as np, keras, tandem_keras
            archive, data = sys.argv[1], sys.argv[2]
            model = keras.saving.load_model(archive)
            load = lambda n: np.load(os.path.join(data, n + ".npy"))
            x = {"main_input": load("main_input"), "aux_input": load("aux_input")}
            y = {"main_output": load("main_output"), "aux_output": load("aux_output")}
            def expect(kind, words, **kw):
                args = dict(model=model, x=x, y=y, verbose=False); args.update(kw)
                try:
                    tandem_keras.fit(args.pop("model"), args.pop("x"), args.pop("y"), **args)
                except kind as e:
                    assert all(w in str(e) for w in words), (kind, words, str(e))
                    print("ok", kind.__name__, words)
                    return
                raise AssertionError(f"no {kind.__name__} for {words}")
            expect(ValueError, ["ranks"], ranks=0)
            expect(ValueError, ["batch_size"], batch_size=-1)
            expect(ValueError, ["x", "main_inputs"], x={"main_inputs": x["main_input"], "aux_input": x["aux_input"]})
            expect(ValueError, ["y['aux_output']", "rows"], y={"main_output": y["main_output"], "aux_output": y["aux_output"][:5]})
            expect(FileNotFoundError, ["hostfile"], hostfile="/nonexistent/hosts")
            expect(ValueError, ["validation_data"], validation_data=(x,))
            expect(TypeError, ["model"], model="m.keras")
            expect(ValueError, ["out", "run_dir"], out="/tmp/x")
            expect(tandem_keras.TandemError, ["--optimizer", "sophia"], optimizer="sophia")
            plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
            expect(ValueError, ["model", "compile"], model=plain, x=np.zeros((4, 3)), y=np.zeros((4, 1)))
            """
        let r = try python(code, [model("headline"), data("headline")])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        XCTAssertEqual(r.stdout.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count, 10, r.stdout)
    }
}
