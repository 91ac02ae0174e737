// The progress display (docs/SPEC.md §11): under a pseudo-terminal (util-linux
// `script`) a bar redrawn in place that ends with the epoch's line; piped,
// plain lines; --verbose 2 one line per epoch; --verbose 0 nothing.

import Foundation
import TandemTestSupport
import XCTest

final class ProgressTests: XCTestCase {
    func testBarOnATerminalPlainLinesOtherwise() throws {
        let dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/data", "--samples", "200"] + Harness.tiny).status, 0)
        func train(_ out: String, _ extra: [String]) -> [String] {
            ["train", "--data", dir + "/data", "--out", dir + "/" + out, "--epochs", "2", "--batch-size", "8"]
                + Harness.tiny + extra
        }
        let command = ([Harness.binary] + train("tty", [])).map { "'\($0)'" }.joined(separator: " ")
        // 50 ms per step (the test hook): the bar, redrawn at most every 0.1 s, has time to move.
        let tty = try Harness.run(
            "/usr/bin/script", ["-q", "-e", "-c", command, "/dev/null"],
            environment: ["TANDEM_TEST_STEP_DELAY_MS": "50"])
        XCTAssertEqual(tty.status, 0, tty.stderr)
        let screen = tty.stdout
        let redraws = screen.components(separatedBy: "\r\u{1B}[K").count - 1
        XCTAssertGreaterThan(redraws, 10, "the bar is redrawn in place")
        XCTAssertTrue(screen.contains("25/25 ━━━━━━━━━━━━━━━━━━━━━━━━"), "a full bar at the epoch's last step")
        XCTAssertTrue(screen.contains(" acc "), "the bar shows each head's accuracy")
        for e in 1...2 {
            XCTAssertTrue(
                screen.contains("\r\u{1B}[Kepoch \(e)/2  loss "), "epoch \(e)'s summary line replaces its bar")
        }
        let piped = try Harness.tandem(train("pipe", []))
        XCTAssertEqual(piped.status, 0, piped.stderr)
        XCTAssertFalse(piped.stderr.contains("\r"), "no carriage returns in a pipe")
        XCTAssertFalse(piped.stderr.contains("━"))
        XCTAssertTrue(piped.stderr.contains("epoch 1/2  step 2/25"), piped.stderr)
        XCTAssertTrue(piped.stderr.contains("epoch 2/2  loss "))
        let quiet2 = try Harness.tandem(train("v2", ["--verbose", "2"]))
        XCTAssertFalse(quiet2.stderr.contains("step "), quiet2.stderr)
        XCTAssertEqual(quiet2.stderr.components(separatedBy: "\n").filter { $0.hasPrefix("epoch ") }.count, 2)
        let silent = try Harness.tandem(train("v0", ["--verbose", "0"]))
        XCTAssertFalse(silent.stderr.contains("epoch "), silent.stderr)
        XCTAssertNotEqual(try Harness.tandem(train("bad", ["--verbose", "3"])).status, 0)
    }
}
