// Where a dataset's arrays come from (docs/SPEC.md §5, §13): a directory of `<name>.npy`, the
// `<name>.npy` members of one `.npz` (np.savez), or the columns of a CSV/TSV with a header
// (converted once to a cache of .npy files, CSV.swift). Every form gives the same arrays, so
// the run is the same bytes whichever the user has. A CSV column of image paths feeds an image
// input through ImageColumn (decoded as its rows are read, never cached).

import Foundation
import TandemCore
import TandemKeras

public final class DataFiles: @unchecked Sendable {
    /// What `--data` named.
    public let location: String
    private enum Storage {
        case directory(String)
        case npz(NPZArchive)
        /// The CSV's cache directory of .npy files.
        case csv(cache: String)
    }
    private let storage: Storage
    /// For a CSV: each image input's declared sample shape (None axes nil).
    private var imageShapes: [String: [Int?]] = [:]
    /// For a CSV: whether this open converted it, or re-used the cache (nil otherwise).
    public private(set) var conversion: (cache: String, converted: Bool)?

    package static func isCSV(_ location: String) -> Bool {
        let l = location.lowercased()
        return l.hasSuffix(".csv") || l.hasSuffix(".tsv")
    }

    /// A directory or an .npz (a CSV needs the model's names: `open(_:for:communicator:)`).
    public init(_ location: String) throws {
        self.location = location
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: location, isDirectory: &isDirectory)
        if location.lowercased().hasSuffix(".npz") {
            guard exists, !isDirectory.boolValue else { throw TandemError.file(location, "file not found") }
            storage = .npz(try NPZArchive(path: location))
        } else if DataFiles.isCSV(location) {
            throw TandemError.usage("\(location): a CSV dataset is opened for a model (DataFiles.open)")
        } else {
            guard exists, isDirectory.boolValue else {
                throw TandemError.file(
                    location,
                    exists
                        ? "not a dataset: give a directory of .npy files, an .npz, or a .csv/.tsv with a header"
                        : "dataset directory not found")
            }
            storage = .directory(location)
        }
    }

    private init(csv: String, cache: String, converted: Bool) {
        location = csv
        storage = .csv(cache: cache)
        conversion = (cache, converted)
    }

    /// `location` for `description`'s inputs and outputs. A CSV is converted to its cache on
    /// rank 0 (agreed on), then every other rank re-uses that cache — or, when it cannot see it
    /// (another host without a shared file system), converts its own.
    public static func open(_ location: String, for description: ModelDescription, communicator comm: Communicator)
        throws -> DataFiles
    {
        guard isCSV(location) else { return try comm.agreeOn { try DataFiles(location) } }
        let groups = columnGroups(description)
        let first = try comm.agreeOn { comm.rank == 0 ? try CSVDataset.cache(csv: location, groups: groups) : nil }
        let mine = try comm.agreeOn { try first ?? CSVDataset.cache(csv: location, groups: groups) }
        let files = DataFiles(csv: location, cache: mine.directory, converted: mine.converted)
        for g in groups where g.imagePaths { files.imageShapes[g.name] = g.sampleShape }
        return files
    }

    /// What a CSV feeds: every input (required), every output and its sample weights (optional).
    static func columnGroups(_ description: ModelDescription) -> [CSVColumnGroup] {
        var groups = description.inputs.map { id -> CSVColumnGroup in
            let config = description.node(id)!.config
            let dims = Array(((config["batch_shape"] ?? config["batch_input_shape"])?.array ?? []).dropFirst())
            // An image input [H, W, C] may be fed by one column of image paths (ImageColumn.swift).
            return CSVColumnGroup(
                name: description.node(id)!.layer, sampleShape: dims.count >= 2 ? dims.map(\.integer) : nil,
                required: true, emptyIsMissing: false, imagePaths: dims.count == 3)
        }
        for output in description.outputNames {
            groups.append(CSVColumnGroup(name: output, required: false, emptyIsMissing: true))
            groups.append(CSVColumnGroup(name: output + ".sample_weight", required: false, emptyIsMissing: false))
        }
        return groups
    }

    /// What the start-up report says of a CSV's cache (nil for other forms).
    public var conversionNote: String? {
        conversion.map { c in
            "\(location) is read through its cache \(c.cache) (converted once, re-used while the CSV is unchanged)"
        }
    }

    /// The array named `name`, or nil when the data has none.
    package func array(_ name: String) throws -> NPYArray? {
        switch storage {
        case .directory(let directory):
            let path = URL(fileURLWithPath: directory).appendingPathComponent("\(name).npy").path
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            return try NPYArray(path: path)
        case .csv(let cache):
            // Errors name the CSV and the column group, not the cache.
            let path = cache + "/\(name).npy"
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            return try NPYArray(path: path, label: "\(location)[\(name)]")
        case .npz(let archive): return try archive.array(name)
        }
    }

    /// The rows input `name` of sample shape `sampleShape` reads: its array, or the image files a
    /// CSV column names; nil when the data has neither.
    package func input(_ name: String, sampleShape: [Int]) throws -> (any SampleArray)? {
        if case .csv(let cache) = storage {
            let paths = cache + "/\(name).paths"
            if FileManager.default.fileExists(atPath: paths) {
                if let declared = imageShapes[name], declared.contains(where: { $0 == nil }) {
                    throw TandemError.file(
                        location,
                        "column '\(name)' names image files, but the model's input '\(name)' has no fixed size (\(declared.map { $0.map(String.init) ?? "None" }.joined(separator: ", "))): images are resized to the input's height and width"
                    )
                }
                guard [1, 3, 4].contains(sampleShape.last) else {
                    throw TandemError.file(
                        location,
                        "column '\(name)' names image files, but the model's input '\(name)' has \(sampleShape.last ?? 0) channels (image files give 1: gray, 3: RGB or 4: RGBA)"
                    )
                }
                return try ImageColumn(csv: location, column: name, paths: paths, sampleShape: sampleShape)
            }
        }
        return try array(name)
    }

    /// The error for a missing array `name`, which the model's `what` needs.
    package func missing(_ name: String, what: String) -> TandemError {
        switch storage {
        case .directory(let directory):
            return .file(
                URL(fileURLWithPath: directory).appendingPathComponent("\(name).npy").path,
                "file not found (the model's \(what) needs it)")
        case .npz(let archive):
            return .file(
                location,
                "has no member '\(name).npy' (the model's \(what) needs it; the archive holds \(archive.names.map { "'\($0)'" }.joined(separator: ", ")))"
            )
        case .csv:
            return .file(location, "has no column '\(name)' (or '\(name)_0', '\(name)_1', …) for the model's \(what)")
        }
    }
}
