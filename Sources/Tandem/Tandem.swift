// `import Tandem` is the whole library: the targets below, in dependency order (Package.swift).
// The CLI and users' programs import this; the library's own targets and the in-process tests
// import the parts they use.

@_exported import TandemCore
@_exported import TandemKeras
@_exported import TandemTensorBoard
@_exported import TandemTraining
