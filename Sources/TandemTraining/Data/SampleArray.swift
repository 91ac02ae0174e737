// The rows one model input is read from: a .npy array (NPY.swift: a file, an .npz member, a CSV's
// cache) or the image files a CSV column names (ImageColumn.swift). Dataset reads inputs only
// through this; targets and sample weights are always arrays.

package protocol SampleArray: AnyObject, Sendable {
    /// [N, sample shape…].
    var shape: [Int] { get }
    /// What errors name (a file, `archive.npz[member]`, `data.csv[column]`).
    var path: String { get }
    /// The bytes it holds (the benchmark's data size).
    var byteCount: Int { get }
    /// Row `row` as float32 into `out[0..<rowWidth]`.
    func readFloats(row: Int, into out: UnsafeMutablePointer<Float>)
    /// Row `row` as token ids; the first column that is not a whole number in [0, limit), if any.
    func readTokens(row: Int, limit: Int, into out: UnsafeMutablePointer<Int32>) -> (column: Int, value: Double)?
}

extension SampleArray {
    package var rows: Int { shape.first ?? 1 }
    package var rowWidth: Int { shape.dropFirst().reduce(1, *) }
}

extension NPYArray: SampleArray {}
