// The `tandem` command: a thin ArgumentParser layer over the Tandem library.
// Each subcommand lives in its own file; this one holds the entry point and
// the error policy shared by all of them.

import ArgumentParser
import Foundation
import Tandem

@main
struct TandemCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Data-parallel training of shared-trunk, multi-head networks.",
        discussion: """
            One optimizer minimises ONE weighted total loss, total = Σ weight_h · loss_h,
            so every head's loss also trains the shared trunk. Run it directly for one
            process, or under `mpirun -np N` for data parallelism over N ranks: each rank
            computes the gradient of its slice of the global batch, one allreduce combines
            them, and every rank applies the same step.

            Typical use:
              tandem gen-data --out data --samples 4096
              tandem train --data data --out run --optimizer adam --epochs 3
              tandem evaluate --weights run/weights.safetensors --data data
              tandem predict --weights run/weights.safetensors --data data --out preds
            """,
        subcommands: [GenData.self, Train.self, Evaluate.self, Predict.self, Bench.self])

    static func main() {
        useFastBLASKernels()
        Self.main(nil)
    }
}

/// Re-executes this process once with OPENBLAS_CORETYPE set when OpenBLAS fell
/// back to generic kernels on a CPU it does not know (see `BLASKernels`). Runs
/// before anything else, MPI included, so the process keeps its pid and its
/// place under mpirun. If exec fails, training goes on with the slower kernels.
func useFastBLASKernels() {
    guard let core = BLASKernels.betterCoreType() else { return }
    setenv(BLASKernels.fallbackVariable, BLASKernels.coreName, 1)
    setenv("OPENBLAS_CORETYPE", core, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    unsetenv("OPENBLAS_CORETYPE")
    unsetenv(BLASKernels.fallbackVariable)
}

/// Runs `body` with the process's communicator and Tandem's error policy:
/// one clear message, exit 1, and never a rank left waiting. Errors the
/// ranks agreed on exit cleanly; any other error under MPI aborts the job.
func runCommand(_ body: (Communicator) throws -> Void) throws {
    let env = ProcessInfo.processInfo.environment
    setBLASThreads(Int(env["OPENBLAS_NUM_THREADS"] ?? "") ?? 1)
    let communicator: Communicator
    do { communicator = try Launch.communicator() } catch {
        printError("\(error)")
        throw ExitCode(1)
    }
    let mpi = communicator as? MPICommunicator
    defer { mpi?.finalize() }
    do {
        try body(communicator)
    } catch let error as AgreedError {
        if error.reporter { printError(error.message) }
        throw ExitCode(1)
    } catch let error as TandemError {
        // Usage errors follow from the command line alone, which every rank
        // parses alike: every rank stops here, rank 0 says why.
        if case .usage = error {
            if communicator.rank == 0 { printError(error.description) }
            throw ExitCode(1)
        }
        if communicator.size > 1 { communicator.abort(message: "\(error)", code: 1) }
        printError("\(error)")
        throw ExitCode(1)
    } catch {
        if communicator.size > 1 { communicator.abort(message: "\(error)", code: 1) }
        printError("\(error)")
        throw ExitCode(1)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
}

/// Model size flags (SPEC §6). Omitted flags come from a weights file or the
/// data when there is one, else from the headline defaults.
struct ModelSizeOptions: ParsableArguments {
    @Option(help: "Model preset.") var model: String = "headline"
    @Option(help: "Vocabulary size (token ids are 0..<vocab). Default 10000.") var vocab: Int?
    @Option(name: .customLong("seq-len"), help: "Tokens per sample. Default 100.") var seqLen: Int?
    @Option(name: .customLong("embed-dim"), help: "Embedding width. Default 512.") var embedDim: Int?
    @Option(name: .customLong("lstm-units"), help: "LSTM units. Default 32.") var lstmUnits: Int?
    @Option(name: .customLong("aux-features"), help: "Width of aux_input. Default 5.") var auxFeatures: Int?
    @Option(name: .customLong("dense-units"), help: "Units of each relu Dense layer. Default 64.") var denseUnits: Int?
    @Option(name: .customLong("dense-layers"), help: "Number of relu Dense layers. Default 3.") var denseLayers: Int?

    /// The flags the user gave, by their long names.
    var given: Set<String> {
        var s = Set<String>()
        if vocab != nil { s.insert("vocab") }
        if seqLen != nil { s.insert("seq-len") }
        if embedDim != nil { s.insert("embed-dim") }
        if lstmUnits != nil { s.insert("lstm-units") }
        if auxFeatures != nil { s.insert("aux-features") }
        if denseUnits != nil { s.insert("dense-units") }
        if denseLayers != nil { s.insert("dense-layers") }
        return s
    }

    /// Applies the given flags over `config` and checks every size.
    func apply(to config: inout HeadlineConfig) throws {
        guard model == "headline" else { throw TandemError.usage("--model: unknown preset '\(model)' (available: headline)") }
        if let vocab { config.vocabulary = vocab }
        if let seqLen { config.sequenceLength = seqLen }
        if let embedDim { config.embeddingDimension = embedDim }
        if let lstmUnits { config.lstmUnits = lstmUnits }
        if let auxFeatures { config.auxFeatures = auxFeatures }
        if let denseUnits { config.denseUnits = denseUnits }
        if let denseLayers { config.denseLayers = denseLayers }
        let sizes: [(String, Int, Int)] = [("--vocab", config.vocabulary, 1), ("--seq-len", config.sequenceLength, 1),
            ("--embed-dim", config.embeddingDimension, 1), ("--lstm-units", config.lstmUnits, 1),
            ("--aux-features", config.auxFeatures, 1), ("--dense-units", config.denseUnits, 1),
            ("--dense-layers", config.denseLayers, 0)]
        for (flag, value, low) in sizes where value < low {
            throw TandemError.usage("\(flag) must be at least \(low), got \(value)")
        }
        if config.lstmUnits > 4096 { throw TandemError.usage("--lstm-units must be at most 4096, got \(config.lstmUnits)") }
    }
}

/// Loss-weight and class-weight flags, turned into the model's heads.
struct HeadOptions: ParsableArguments {
    @Option(name: .customLong("loss-weight"), help: ArgumentHelp("Weight of an output's loss in the total, OUTPUT=W (repeatable). Defaults: main_output=1.0, aux_output=0.2.", valueName: "output=w"))
    var lossWeights: [String] = []
    @Option(name: .customLong("class-weight"), help: ArgumentHelp("Per-class sample-weight multipliers, OUTPUT=CLASS:W,CLASS:W (repeatable).", valueName: "output=c:w,..."))
    var classWeights: [String] = []

    func heads() throws -> [Head] {
        var heads = Head.headlineDefaults
        let names = heads.map(\.output).joined(separator: ", ")
        for item in lossWeights {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let w = Double(parts[1]), w.isFinite, w >= 0 else {
                throw TandemError.usage("--loss-weight '\(item)': expected OUTPUT=WEIGHT with a non-negative number")
            }
            guard let h = heads.firstIndex(where: { $0.output == parts[0] }) else {
                throw TandemError.usage("--loss-weight: unknown output '\(parts[0])' (outputs: \(names))")
            }
            heads[h].weight = w
        }
        for item in classWeights {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let h = heads.firstIndex(where: { $0.output == parts[0] }) else {
                throw TandemError.usage("--class-weight '\(item)': expected OUTPUT=CLASS:W,... with OUTPUT one of \(names)")
            }
            for pair in parts[1].split(separator: ",") {
                let cw = pair.split(separator: ":").map(String.init)
                guard cw.count == 2, let c = Int(cw[0]), c >= 0, let w = Double(cw[1]), w.isFinite, w >= 0 else {
                    throw TandemError.usage("--class-weight '\(item)': '\(pair)' is not CLASS:WEIGHT")
                }
                heads[h].classWeights[c] = w
            }
        }
        return heads
    }
}

/// Parses `LAYER=λ` items.
func parseL2(_ items: [String]) throws -> [String: Double] {
    var result: [String: Double] = [:]
    for item in items {
        let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let l = Double(parts[1]), l.isFinite, l >= 0 else {
            throw TandemError.usage("--l2 '\(item)': expected LAYER=LAMBDA with a non-negative number")
        }
        result[parts[0]] = l
    }
    return result
}

/// Reads a file on rank 0 and sends its parsed form to every rank (the path
/// need not exist on other nodes). Errors are agreed on.
func rankZeroBroadcast(_ communicator: Communicator, _ read: () throws -> String) throws -> String {
    let text = try communicator.agreeOn { communicator.rank == 0 ? try read() : "" }
    var length = [Double(text.utf8.count)]
    try communicator.allReduceMax(&length)
    var bytes = Array(text.utf8) + [UInt8](repeating: 0, count: Int(length[0]) - text.utf8.count)
    if !bytes.isEmpty {
        try bytes.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, bytes: $0.count, from: 0) }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The sequence length stored in a dataset's main_input.npy, if readable.
func sequenceLength(inData directory: String) -> Int? {
    let path = URL(fileURLWithPath: directory).appendingPathComponent("main_input.npy").path
    guard let array = try? NPYArray(path: path), array.shape.count == 2 else { return nil }
    return array.shape[1]
}
