// The .npz and CSV readers on their own: what np.savez_compressed writes (deflated members), CSV
// quoting, CRLF line ends, a last line without a newline, TSV, columns in any order, and a
// (None, F) input reshaped from its <name>_k columns.

import CMinizip
import Foundation
import TandemTestSupport
import XCTest

@testable import TandemTraining

final class DataFilesTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws { dir = temporaryDirectory() }

    private func floats(_ array: NPYArray) -> [Float] {
        var out = [Float](repeating: 0, count: array.rows * array.rowWidth)
        for r in 0..<array.rows {
            out.withUnsafeMutableBufferPointer { array.readFloats(row: r, into: $0.baseAddress! + r * array.rowWidth) }
        }
        return out
    }

    /// A deflated member (np.savez_compressed) is inflated and reads as the stored one.
    func testDeflatedAndStoredMembersReadAlike() throws {
        let values: [Float] = (0..<60).map { Float($0) * 0.25 - 3 }
        try write(values, [20, 3], dir + "/x.npy")
        try NPZArchive.write(members: [("x", dir + "/x.npy")], to: dir + "/stored.npz")
        // The same member deflated, through minizip as numpy's zipfile would write it.
        let npy = try Data(contentsOf: URL(fileURLWithPath: dir + "/x.npy"))
        let zip = try XCTUnwrap(zipOpen64(dir + "/deflated.npz", APPEND_STATUS_CREATE))
        var info = zip_fileinfo()
        XCTAssertEqual(zipOpenNewFileInZip64(zip, "x.npy", &info, nil, 0, nil, 0, nil, Z_DEFLATED, 6, 0), ZIP_OK)
        npy.withUnsafeBytes { _ = zipWriteInFileInZip(zip, $0.baseAddress, UInt32($0.count)) }
        XCTAssertEqual(zipCloseFileInZip(zip), ZIP_OK)
        XCTAssertEqual(zipClose(zip, nil), ZIP_OK)

        for name in ["stored.npz", "deflated.npz"] {
            let archive = try NPZArchive(path: dir + "/" + name)
            XCTAssertEqual(archive.names, ["x"])
            let x = try XCTUnwrap(try archive.array("x"))
            XCTAssertEqual(x.shape, [20, 3], name)
            XCTAssertEqual(floats(x), values, name)
            XCTAssertNil(try archive.array("y"))
        }
        // A damaged deflated member is refused, not read as zeros.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/deflated.npz"))
        bytes[60] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: dir + "/damaged.npz"))
        XCTAssertThrowsError(try NPZArchive(path: dir + "/damaged.npz").array("x"))
    }

    func testCSVQuotingLineEndsAndShapes() throws {
        // Columns in any order, a quoted header cell, CRLF line ends, spaces around numbers, an
        // unused column, and no newline after the last line.
        let text =
            "seq_1,\"seq_0\",label,note,seq_3,seq_2,w\r\n"
            + "1, 2 ,0.5,\"a, b\",4,3,1\r\n"
            + "5,6,,\"say \"\"hi\"\"\",8,7,2\r\n"
            + "9,10,-1.5e-3,x,12,11,0.25"
        try text.write(toFile: dir + "/d.csv", atomically: true, encoding: .utf8)
        let groups = [
            CSVColumnGroup(name: "seq", sampleShape: [nil, 2], required: true, emptyIsMissing: false),
            CSVColumnGroup(name: "label", required: false, emptyIsMissing: true),
            CSVColumnGroup(name: "w", required: false, emptyIsMissing: false),
            CSVColumnGroup(name: "absent", required: false, emptyIsMissing: true),
        ]
        let (cache, converted) = try CSVDataset.cache(csv: dir + "/d.csv", groups: groups)
        XCTAssertTrue(converted)
        let seq = try NPYArray(path: cache + "/seq.npy")
        XCTAssertEqual(seq.shape, [3, 2, 2])  // (None, 2) from four columns
        XCTAssertEqual(seq.type, .float64)
        XCTAssertEqual(floats(seq), [2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12])
        let label = try NPYArray(path: cache + "/label.npy")
        XCTAssertEqual(label.shape, [3])
        XCTAssertEqual(label.double(row: 0), 0.5)
        XCTAssertTrue(label.double(row: 1).isNaN, "an empty output cell is a missing label")
        XCTAssertEqual(label.double(row: 2), -1.5e-3)  // float64: exactly the text's value
        XCTAssertEqual(floats(try NPYArray(path: cache + "/w.npy")), [1, 2, 0.25])
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache + "/absent.npy"))
        XCTAssertFalse(try CSVDataset.cache(csv: dir + "/d.csv", groups: groups).converted, "re-used")
        XCTAssertTrue(
            try CSVDataset.cache(csv: dir + "/d.csv", groups: Array(groups.prefix(2))).converted,
            "other columns asked for: converted again")

        // TSV.
        try "a\tb_0\tb_1\n1\t2\t3\n4\t5\t6\n".write(toFile: dir + "/t.tsv", atomically: true, encoding: .utf8)
        let tsv = try CSVDataset.cache(
            csv: dir + "/t.tsv",
            groups: [
                CSVColumnGroup(name: "a", required: true, emptyIsMissing: false),
                CSVColumnGroup(name: "b", required: true, emptyIsMissing: false),
            ]
        ).directory
        XCTAssertEqual(floats(try NPYArray(path: tsv + "/b.npy")), [2, 3, 5, 6])
        XCTAssertEqual(try NPYArray(path: tsv + "/b.npy").shape, [2, 2])

        // Refusals name the file and the place.
        func refused(_ text: String, _ groups: [CSVColumnGroup], _ expected: String) {
            let path = dir + "/bad-\(UUID().uuidString.prefix(6)).csv"
            try? text.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try CSVDataset.cache(csv: path, groups: groups)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(expected) && message.contains(path), message)
            }
        }
        let x = [CSVColumnGroup(name: "x", required: true, emptyIsMissing: false)]
        refused("x,x_0\n1,2\n", x, "both 'x' and 'x_0'")
        refused("x,x\n1,2\n", x, "repeats the name 'x'")
        refused("x\n", x, "no rows")
        refused(
            "x_0,x_1,x_2\n1,2,3\n",
            [CSVColumnGroup(name: "x", sampleShape: [nil, 2], required: true, emptyIsMissing: false)], "do not fill")
        refused("x\n1\n0x1g\n", x, "line 3, column 1 ('x'): '0x1g' is not a number")
    }
}
