// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Tandem",
    products: [
        // Public products.
        .executable(name: "tandem", targets: ["tandem"]),
        .library(name: "Tandem", targets: ["Tandem"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // .keras archives are zips (read and written through ZIPFoundation, never by hand).
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        // TensorBoard's event records are protobuf messages (Protos/, generated code committed).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // Implementation details: system libraries behind tiny C shims.
        .systemLibrary(
            name: "CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(
            name: "CBLAS",
            providers: [.apt(["libopenblas-dev"])]),
        // The HDF5 C library, for a .keras archive's model.weights.h5.
        .systemLibrary(
            name: "CHDF5", pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]),

        // minizip, for .npz datasets (stored members memory-mapped in place).
        .systemLibrary(
            name: "CMinizip", pkgConfig: "minizip",
            providers: [.apt(["libminizip-dev"])]),

        // libcsv, for CSV datasets (a streaming parser).
        .systemLibrary(
            name: "CCSV",
            providers: [.apt(["libcsv-dev"])]),

        // libpng and libjpeg-turbo, for image files named by a CSV (decoded as the rows are read).
        .systemLibrary(
            name: "CPNG", pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]),
        .systemLibrary(
            name: "CTurboJPEG", pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"])]),

        // cairo, for `tandem plot`'s PNG figures.
        .systemLibrary(
            name: "CCairo", pkgConfig: "cairo",
            providers: [.apt(["libcairo2-dev"])]),

        // Element-wise C kernels Swift does not vectorise (run-time ISA dispatch).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),

        // oneDNN's convolutions (Conv2D's fast path beside its im2col + GEMM plain path).
        // (Debian's libdnnl-dev, built on OpenMP: gomp sets its thread count.)
        .target(
            name: "CDNNL", cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]),

        // Stop-on-request signal flags.
        .target(name: "CSignals"),

        // The library, in dependency order. Core: kernels, layers (each with its Keras class's
        // table entry: config → layer), the runnable model, losses, metrics, optimizers and the
        // Communicator protocol (BatchNormalization's global statistics call it) with local and
        // thread ranks — BLAS, oneDNN and the C kernels only.
        .target(name: "TandemCore", dependencies: ["CBLAS", "CKernels", "CDNNL"]),

        // Keras: the model description, config.json and compile config, and .keras archives
        // (HDF5 weights in a zip).
        .target(
            name: "TandemKeras",
            dependencies: [
                "TandemCore", "CHDF5", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]),

        // TensorBoard's event files (protobuf records).
        .target(
            name: "TandemTensorBoard",
            dependencies: ["TandemCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),

        // Training: the step and its strategies, the trainer, checkpoints, the run's rules, data.
        .target(
            name: "TandemTraining",
            dependencies: [
                "TandemCore", "TandemKeras", "TandemTensorBoard", "CSignals", "CMinizip", "CCSV", "CPNG", "CTurboJPEG",
            ]),

        // `import Tandem`: the four above, re-exported — what the CLI and a user's program import.
        // It links neither MPI nor cairo: those are the two targets below.
        .target(name: "Tandem", dependencies: ["TandemCore", "TandemKeras", "TandemTensorBoard", "TandemTraining"]),

        // MPI behind the Communicator protocol: the only code that links it.
        .target(name: "TandemMPI", dependencies: ["Tandem", "CMPI"]),

        // `tandem plot`'s PNG figures, drawn with cairo.
        .target(name: "TandemPlot", dependencies: ["Tandem", "CCairo"]),

        // The command-line tool: a thin ArgumentParser layer over the library. Position-
        // independent, as the toolchain links it: a fixed-address (-no-pie) link saved ~2 MB
        // of relocated data per rank, but with the Swift runtime linked dynamically (a plain
        // `swift build -c release`) ld.so then warned on every start about the address of a
        // protected libswiftCore function, in the middle of a run's output.
        .executableTarget(
            name: "tandem",
            dependencies: [
                "Tandem", "TandemMPI", "TandemPlot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Tests: helpers both test targets use, then the in-process and the CLI tests.
        .target(name: "TandemTestSupport", dependencies: ["Tandem"], path: "Tests/TandemTestSupport"),
        .testTarget(
            name: "TandemTests",
            dependencies: [
                "TandemCore", "TandemKeras", "TandemTensorBoard", "TandemTraining", "TandemTestSupport", "CKernels",
                "CDNNL",
                "CMinizip", "CPNG", "CTurboJPEG",
            ]),
        .testTarget(name: "TandemCLITests", dependencies: ["Tandem", "TandemPlot", "TandemTestSupport", "CCairo"]),
    ]
)
