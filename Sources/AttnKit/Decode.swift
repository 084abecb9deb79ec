import AttnKitCore

/// The attention half of KVCacheAttention: queries against the (already
/// appended) cache through the decode engine, then the merge of its splits.
enum DecodeAttention {
    static func run<E: AttnStorage, C: AttnStorage>(_ plan: KVCacheAttention.Plan, q: StridedTensor<E>,
                                    kCache: StridedTensor<C>, vCache: StridedTensor<C>,
                                    scales: (k: StridedTensor<Float>, v: StridedTensor<Float>)? = nil,
                                    rotary: (cos: StridedTensor<E>, sin: StridedTensor<E>)?,
                                    options: KVCacheAttention, out: MutableStridedTensor<E>,
                                    lse: MutableStridedTensor<Float>?, threads: Int) throws {
        guard !out.shape.contains(0) else { return }   // no query rows, heads or value dims
        let group = plan.queryHeads / plan.keyHeads
        let rows = group * plan.queries
        let local = options.causal || options.windowLeft >= 0 || options.windowRight >= 0

        // Queries, rotated at their positions, rounded to the cache dtype as
        // flash-attn stores them, then scaled: [B][Hk][group·L][D] fp32.
        let queryCount = try checkedProduct(plan.batch, plan.queryHeads, plan.queries, plan.headDim, what: "q")
        let queries = try Workspace<Float>(count: queryCount)
        defer { queries.deallocate() }
        let scale = Float(plan.scale)
        var row = [Float](repeating: 0, count: plan.headDim)
        for b in 0..<plan.batch {
            for i in 0..<plan.queries {
                for h in 0..<plan.queryHeads {
                    let source = q.data + (b * q.strides[0] + i * q.strides[1] + h * q.strides[2])
                    for d in 0..<plan.headDim { row[d] = E.toFloat(source[d * q.strides[3]]) }
                    if let rotary {
                        let position = plan.seqlens[b] + (local ? i : 0)
                        options.rotate(&row, position: position, rotaryDim: plan.rotaryDim, cos: rotary.cos, sin: rotary.sin)
                        for d in 0..<plan.rotaryDim { row[d] = E.toFloat(E.fromFloat(row[d])) }
                    }
                    let kvHead = h / group, g = h % group
                    let target = queries.pointer + (((b * plan.keyHeads + kvHead) * rows + g * plan.queries + i) * plan.headDim)
                    for d in 0..<plan.headDim { target[d] = row[d] * scale }
                }
            }
        }

        // Keys per sequence, and the splits: fixed sizes, never the thread count.
        let keyCounts = (0..<plan.batch).map { plan.seqlens[$0] + plan.newTokens - plan.leftpad[$0] }
        var tasks: [DecodeTask] = []
        var firstTask: [Int] = []   // per sequence: its tasks are firstTask ..< firstTask + taskCounts
        var taskCounts: [Int] = []
        let windowLeft = AttentionOptions.boundedWindow(options.windowLeft)
        let windowRight = options.causal ? 0 : AttentionOptions.boundedWindow(options.windowRight)
        for b in 0..<plan.batch {
            let keys = keyCounts[b], diagonal = keys - plan.queries
            // Only keys some query may attend: the union of the rows' windows.
            let low = windowLeft >= 0 ? Swift.max(0, diagonal - windowLeft) : 0
            let high = windowRight >= 0 ? Swift.min(keys, plan.queries - 1 + diagonal + windowRight + 1) : keys
            let span = Swift.max(0, high - low)
            let splitKeys: Int
            if options.numSplits > 0 {
                splitKeys = Swift.max(1, (span + options.numSplits - 1) / options.numSplits)
            } else {
                splitKeys = rows * plan.keyHeads <= 64 ? KVCacheAttention.automaticSplitKeys : Swift.max(span, 1)
            }
            let splits = Swift.max(1, (span + splitKeys - 1) / splitKeys)
            firstTask.append(tasks.count)
            taskCounts.append(splits)
            for split in 0..<splits {
                let start = low + split * splitKeys
                tasks.append(DecodeTask(sequence: b, keyStart: Swift.min(start, high), keyEnd: Swift.min(start + splitKeys, high),
                                        partial: tasks.count))
            }
        }
        let width = plan.valueDim + 2
        let partials = try Workspace<Float>(count: try checkedProduct(tasks.count, plan.keyHeads, rows, width,
                                                                      what: "the decode splits"))
        defer { partials.deallocate() }

        var pages: [Int] = [], pagesPerSequence = 0
        if let table = plan.blockTable { pages = table.entries; pagesPerSequence = table.pagesPerSequence }
        var attentionOptions = AttentionOptions(headDim: plan.headDim, valueDim: plan.valueDim, scale: plan.scale)
        attentionOptions.setSoftcap(options.softcap)
        let problem = DecodeProblem(
            queries: UnsafePointer(queries.pointer), batch: plan.batch, keyHeads: plan.keyHeads, group: group,
            queriesPerSequence: plan.queries, headDim: plan.headDim, valueDim: plan.valueDim,
            keys: kCache.data, keyStrides: (kCache.strides[0], kCache.strides[1], kCache.strides[2], kCache.strides[3]),
            values: vCache.data, valueStrides: (vCache.strides[0], vCache.strides[1], vCache.strides[2], vCache.strides[3]),
            slots: plan.slots, leftpad: plan.leftpad, keyCounts: keyCounts, pageSize: plan.pageSize, pages: pages,
            pagesPerSequence: pagesPerSequence, slopes: plan.slopes, windowLeft: windowLeft, windowRight: windowRight,
            softcap: attentionOptions.softcap)
        if let scales {
            try Int8Runner.runDecode(problem, scales: scales, tasks: tasks, partials: partials.pointer, threads: threads)
        } else {
            try KernelDispatch.runDecode(problem, tasks: tasks, partials: partials.pointer, threads: threads)
        }

        // Merge each sequence's splits in split order, per (KV head, query row).
        let partialBase = partials.pointer
        let taskRows = plan.keyHeads * rows
        parallelFor(count: plan.batch * plan.keyHeads, threads: threads) { pair, _ in
            let b = pair / plan.keyHeads, kvHead = pair % plan.keyHeads
            for r in 0..<rows {
                let g = r / plan.queries, i = r % plan.queries, h = kvHead * group + g
                let target = out.data + (b * out.strides[0] + i * out.strides[1] + h * out.strides[2])
                let row = kvHead * rows + r
                let logSumExp = AttentionStates.mergePartials(
                    first: partialBase + (firstTask[b] * taskRows + row) * width, count: taskCounts[b],
                    stateStride: taskRows * width, valueDim: plan.valueDim, into: target, colStride: out.strides[3])
                if let lse { lse.data[b * lse.strides[0] + h * lse.strides[1] + i * lse.strides[2]] = logSumExp }
            }
        }
    }
}
