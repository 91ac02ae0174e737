// `tandem plot RUN`: a PNG of a run's metrics.jsonl through cairo — one row of
// panels per head (its loss, then each of its metrics), train and validation per
// epoch, each panel titled, with labelled axes and a legend.

import CCairo
import Foundation
import Tandem

/// Where `plotRun` puts its panels (the tests read the PNG with it).
public struct PlotLayout: Sendable, Equatable {
    public static let panelWidth = 380, panelHeight = 270, titleHeight = 44
    public var heads: [String]
    /// Per head, the figures drawn (loss first), without the head's prefix.
    public var panels: [[String]]
    public var columns: Int { panels.map(\.count).max() ?? 1 }
    public var width: Int { columns * PlotLayout.panelWidth }
    public var height: Int { PlotLayout.titleHeight + heads.count * PlotLayout.panelHeight }

    /// The rectangle of head `h`'s panel `k` (x, y, width, height).
    public func panel(_ h: Int, _ k: Int) -> (x: Int, y: Int, width: Int, height: Int) {
        (
            k * PlotLayout.panelWidth, PlotLayout.titleHeight + h * PlotLayout.panelHeight, PlotLayout.panelWidth,
            PlotLayout.panelHeight
        )
    }

    /// Heads are the names with a `<head>_loss` figure; a head's panels are its other figures.
    public init(keys: [String]) {
        let heads = keys.filter { $0.hasSuffix("_loss") && !$0.hasPrefix("val_") && $0 != "loss" }.map {
            String($0.dropLast(5))
        }
        self.heads = heads
        panels = heads.map { head in
            var names = ["loss"]
            for key in keys where key.hasPrefix(head + "_") && !key.hasPrefix("val_") {
                // The longest head prefix owns a key (heads "a" and "a_b" both exist sometimes).
                guard heads.filter({ key.hasPrefix($0 + "_") }).max(by: { $0.count < $1.count }) == head else {
                    continue
                }
                let name = String(key.dropFirst(head.count + 1))
                if name != "loss" && !names.contains(name) { names.append(name) }
            }
            return names
        }
    }
}

/// The train (blue) and validation (orange) colours, for the tests that look at the pixels.
public let plotTrainColour: (r: Double, g: Double, b: Double) = (0.12, 0.47, 0.71)
public let plotValidationColour: (r: Double, g: Double, b: Double) = (1.0, 0.5, 0.05)

/// RUN/metrics.jsonl: each epoch's figures, and every key in file order.
private func readMetrics(_ run: String) throws -> (epochs: [[String: Double]], keys: [String]) {
    let path = URL(fileURLWithPath: run).appendingPathComponent("metrics.jsonl").path
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw TandemError.file(path, "cannot read (is \(run) a run directory?)")
    }
    var epochs: [[String: Double]] = []
    var keys: [String] = []
    for (i, line) in text.split(separator: "\n").enumerated() {
        guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw TandemError.file(path, "line \(i + 1) is not a JSON object")
        }
        var row: [String: Double] = [:]
        for (k, v) in json { if let d = v as? Double { row[k] = d } else if let n = v as? Int { row[k] = Double(n) } }
        epochs.append(row)
        for k in jsonKeys(String(line)) where !keys.contains(k) { keys.append(k) }
    }
    guard !epochs.isEmpty else { throw TandemError.file(path, "has no epochs yet") }
    return (epochs, keys)
}

/// The panels `plotRun` draws for RUN.
public func plotLayout(run: String) throws -> PlotLayout {
    let layout = PlotLayout(keys: try readMetrics(run).keys)
    guard !layout.heads.isEmpty else {
        throw TandemError.file(run + "/metrics.jsonl", "has no per-output losses to plot")
    }
    return layout
}

/// Draws RUN/metrics.jsonl into `output` (PNG); returns the layout.
@discardableResult
public func plotRun(_ run: String, to output: String) throws -> PlotLayout {
    let (epochs, _) = try readMetrics(run)
    let layout = try plotLayout(run: run)

    guard let surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(layout.width), Int32(layout.height)) else {
        throw TandemError.usage("cannot create a \(layout.width)×\(layout.height) image")
    }
    defer { cairo_surface_destroy(surface) }
    let cr = cairo_create(surface)!
    defer { cairo_destroy(cr) }
    cairo_set_source_rgb(cr, 1, 1, 1)
    cairo_paint(cr)
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD)
    cairo_set_font_size(cr, 17)
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1)
    drawText(
        cr,
        "Tandem run \(URL(fileURLWithPath: run).lastPathComponent): \(epochs.count) epoch\(epochs.count == 1 ? "" : "s")",
        x: 14, y: 28)

    let x = epochs.map { $0["epoch"] ?? 0 }
    for (h, head) in layout.heads.enumerated() {
        for (k, name) in layout.panels[h].enumerated() {
            let key = name == "loss" ? "\(head)_loss" : "\(head)_\(name)"
            let train = epochs.map { $0[key] }
            let validation = epochs.map { $0["val_" + key] }
            let r = layout.panel(h, k)
            drawPanel(
                cr, x: x, train: train, validation: validation, title: "\(head): \(name)", yLabel: name,
                frame: (Double(r.x), Double(r.y), Double(r.width), Double(r.height)))
        }
    }
    cairo_surface_flush(surface)
    let temporary = URL(fileURLWithPath: output).deletingLastPathComponent().appendingPathComponent(
        ".\(URL(fileURLWithPath: output).lastPathComponent).tmp-\(getpid())"
    ).path
    guard cairo_surface_write_to_png(surface, temporary) == CAIRO_STATUS_SUCCESS, rename(temporary, output) == 0 else {
        unlink(temporary)
        throw TandemError.file(output, "cannot write the PNG")
    }
    return layout
}

/// The top-level keys of a JSON object line, in order.
private func jsonKeys(_ line: String) -> [String] {
    var keys: [String] = []
    var depth = 0
    var inString = false
    var escaped = false
    var current = ""
    var expectKey = true
    for ch in line {
        if inString {
            if escaped {
                escaped = false
                current.append(ch)
            } else if ch == "\\" {
                escaped = true
            } else if ch == "\"" {
                inString = false
            } else {
                current.append(ch)
            }
            continue
        }
        switch ch {
        case "\"":
            inString = true
            current = ""
        case "{", "[":
            depth += 1
            if depth == 1 { expectKey = true }
        case "}", "]": depth -= 1
        case ":":
            if depth == 1 && expectKey {
                keys.append(current)
                expectKey = false
            }
        case ",": if depth == 1 { expectKey = true }
        default: break
        }
    }
    return keys
}

private func drawText(
    _ cr: OpaquePointer, _ s: String, x: Double, y: Double, alignRight: Bool = false, center: Bool = false
) {
    var extents = cairo_text_extents_t()
    cairo_text_extents(cr, s, &extents)
    let dx = alignRight ? -extents.x_advance : center ? -extents.x_advance / 2 : 0
    cairo_move_to(cr, x + dx, y)
    cairo_show_text(cr, s)
}

/// Round tick values covering [low, high].
private func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
    let span = max(high - low, 1e-12)
    let raw = span / Double(count)
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    var v = ceil(low / step) * step
    var out: [Double] = []
    while v <= high + step * 1e-9 {
        out.append(v)
        v += step
    }
    return out
}

/// A tick value with as many decimals as the tick step needs.
private func label(_ v: Double, step: Double) -> String {
    if v == 0 { return "0" }
    if abs(v) >= 1e5 || abs(v) < 1e-4 { return String(format: "%.2e", v) }
    let decimals = max(0, Int(-floor(log10(step))) + (step / pow(10, floor(log10(step))) == 2.5 ? 1 : 0))
    return String(format: "%.\(decimals)f", v)
}

private func drawPanel(
    _ cr: OpaquePointer, x: [Double], train: [Double?], validation: [Double?], title: String, yLabel: String,
    frame f: (x: Double, y: Double, w: Double, h: Double)
) {
    let left = f.x + 62
    let right = f.x + f.w - 16
    let top = f.y + 34
    let bottom = f.y + f.h - 44
    let values = (train + validation).compactMap { $0 }.filter(\.isFinite)
    var low = values.min() ?? 0
    var high = values.max() ?? 1
    if high - low < 1e-9 {
        low -= 0.5 * max(abs(low), 1e-3)
        high += 0.5 * max(abs(high), 1e-3)
    }
    let pad = (high - low) * 0.06
    low -= pad
    high += pad
    let x0 = x.first ?? 1
    let x1 = max(x.last ?? 1, x0 + 1)
    func px(_ v: Double) -> Double { left + (v - x0) / (x1 - x0) * (right - left) }
    func py(_ v: Double) -> Double { bottom - (v - low) / (high - low) * (bottom - top) }

    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD)
    cairo_set_font_size(cr, 13)
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1)
    drawText(cr, title, x: (left + right) / 2, y: f.y + 22, center: true)
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL)
    cairo_set_font_size(cr, 10.5)
    // Grid and tick labels.
    cairo_set_line_width(cr, 1)
    let yTicks = ticks(low, high)
    let tickStep = yTicks.count > 1 ? yTicks[1] - yTicks[0] : max(high - low, 1e-12)
    for t in yTicks {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9)
        cairo_move_to(cr, left, py(t))
        cairo_line_to(cr, right, py(t))
        cairo_stroke(cr)
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3)
        drawText(cr, label(t, step: tickStep), x: left - 5, y: py(t) + 4, alignRight: true)
    }
    let xStep = max(1, Int(ceil((x1 - x0) / 8)))
    for e in stride(from: Int(x0), through: Int(x1), by: xStep) {
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3)
        drawText(cr, "\(e)", x: px(Double(e)), y: bottom + 15, center: true)
    }
    drawText(cr, "epoch", x: (left + right) / 2, y: bottom + 32, center: true)
    cairo_save(cr)
    cairo_move_to(cr, f.x + 14, (top + bottom) / 2)
    cairo_rotate(cr, -Double.pi / 2)
    var extents = cairo_text_extents_t()
    cairo_text_extents(cr, yLabel, &extents)
    cairo_rel_move_to(cr, -extents.x_advance / 2, 0)
    cairo_show_text(cr, yLabel)
    cairo_restore(cr)
    // Frame.
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2)
    cairo_rectangle(cr, left, top, right - left, bottom - top)
    cairo_stroke(cr)
    // Curves: a line through the epochs that have the figure, and a dot at each.
    func curve(_ ys: [Double?], _ c: (r: Double, g: Double, b: Double), dashed: Bool) {
        let points = zip(x, ys).compactMap { a, b in b.flatMap { $0.isFinite ? (px(a), py($0)) : nil } }
        guard !points.isEmpty else { return }
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_set_line_width(cr, 2.2)
        var dash: [Double] = [7, 4]
        cairo_set_dash(cr, &dash, dashed ? 2 : 0, 0)
        cairo_move_to(cr, points[0].0, points[0].1)
        for p in points.dropFirst() { cairo_line_to(cr, p.0, p.1) }
        cairo_stroke(cr)
        cairo_set_dash(cr, nil, 0, 0)
        for p in points {
            cairo_arc(cr, p.0, p.1, 3.2, 0, 2 * Double.pi)
            cairo_fill(cr)
        }
    }
    curve(train, plotTrainColour, dashed: false)
    let hasValidation = validation.contains { $0 != nil }
    curve(validation, plotValidationColour, dashed: true)
    // Legend, on white so curves beneath do not hide it.
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85)
    cairo_rectangle(cr, right - 102, top + 3, 98, hasValidation ? 32 : 17)
    cairo_fill(cr)
    var y = top + 14
    for (name, c, show) in [("train", plotTrainColour, true), ("validation", plotValidationColour, hasValidation)]
    where show {
        cairo_set_source_rgb(cr, c.r, c.g, c.b)
        cairo_set_line_width(cr, 2.2)
        cairo_move_to(cr, right - 96, y - 4)
        cairo_line_to(cr, right - 76, y - 4)
        cairo_stroke(cr)
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2)
        drawText(cr, name, x: right - 70, y: y)
        y += 15
    }
}
