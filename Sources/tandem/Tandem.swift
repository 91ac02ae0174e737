// The `tandem` command: a thin ArgumentParser layer over the Tandem library.
// Each subcommand lives in its own file; this one holds the entry point and
// the error policy shared by all of them.

import ArgumentParser
import Foundation
import Tandem
import TandemMPI

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

            Typical use (the headline preset; --model m.keras trains your own Keras model):
              tandem gen-data --out data --samples 4096
              tandem train --data data --out run --optimizer adam --epochs 3
              tandem evaluate --weights run/weights.safetensors --data data
              tandem predict --weights run/weights.safetensors --data data --out preds
            """,
        subcommands: [GenData.self, Train.self, Evaluate.self, Predict.self, Bench.self, Summary.self, Plot.self])

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
    setConvolutionThreads(blasThreads())
    do { try GEMMKernels.checkEnvironment() } catch {
        printError("\(error)")
        throw ExitCode(2)
    }
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
    return String(decoding: try communicator.broadcastFromRankZero(Array(text.utf8)), as: UTF8.self)
}

/// The sequence length of the preset's main_input in `data` (a directory, .npz or CSV), if readable.
func sequenceLength(inData data: String, _ comm: Communicator) -> Int? {
    guard let preset = try? ModelDescription.headline(HeadlineConfig()),
        let files = try? DataFiles.open(data, for: preset, communicator: comm),
        let array = try? files.array("main_input"), array.shape.count == 2
    else { return nil }
    return array.shape[1]
}
