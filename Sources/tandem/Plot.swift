// `tandem plot RUN`: the run's per-head curves as a PNG (Sources/TandemPlot/RunPlot.swift).

import ArgumentParser
import Foundation
import Tandem
import TandemPlot

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Draw a run's metrics.jsonl: a row per head (loss and each metric), train and validation per epoch, as a PNG."
    )

    @Argument(help: "Run directory (with metrics.jsonl).") var directory: String
    @Option(help: "PNG to write. Default: RUN/plot.png.") var out: String?

    func run() throws {
        try runCommand { comm in
            guard comm.rank == 0 else { return }
            let output = out ?? URL(fileURLWithPath: directory).appendingPathComponent("plot.png").path
            let layout = try plotRun(directory, to: output)
            print(
                "wrote \(output): \(layout.width)×\(layout.height), \(layout.heads.count) head\(layout.heads.count == 1 ? "" : "s") (\(zip(layout.heads, layout.panels).map { "\($0): \($1.joined(separator: ", "))" }.joined(separator: "; ")))"
            )
        }
    }
}
