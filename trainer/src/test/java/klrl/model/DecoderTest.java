package klrl.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import klrl.TestPaths;
import klrl.util.Json;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The decoder against an independent float64 NumPy implementation of transformers' modeling code
 * (scripts/reference/hf_forward.py), on bf16 sharded / f16 tied checkpoints with GQA, Qwen2 biases
 * and Llama-3 rope scaling; plus padding, KV-cache and fp16 equivalences.
 */
class DecoderTest {
    static NDManager root;

    @BeforeAll
    static void start() {
        root = NDManager.newBaseManager("PyTorch");
    }

    @AfterAll
    static void stop() {
        root.close();
    }

    /** Full forward of one unpadded sequence: logits [T,V] as a flat float array. */
    static float[] logits(Decoder model, NDManager m, long[] ids) {
        return model.logits(m, ids).toFloatArray();
    }

    static double maxAbsDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded", "qwen2-f16-tied"})
    void logitsMatchIndependentReference(String name) {
        Path dir = TestPaths.fixture(name);
        JsonNode expected = Json.read(TestPaths.fixture(name + ".expected.json"));
        try (NDManager m = root.newSubManager(); Decoder model = Decoder.load(dir, m, DataType.FLOAT32)) {
            for (int s = 0; s < expected.get("ids").size(); s++) {
                JsonNode idsNode = expected.get("ids").get(s);
                long[] ids = new long[idsNode.size()];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = idsNode.get(i).asLong();
                }
                JsonNode rows = expected.get("logits").get(s);
                float[] ref = new float[ids.length * model.config.vocabSize()];
                int k = 0;
                for (JsonNode row : rows) {
                    for (JsonNode v : row) {
                        ref[k++] = (float) v.asDouble();
                    }
                }
                double diff = maxAbsDiff(logits(model, m, ids), ref);
                assertTrue(diff < 1e-4, name + " seq " + s + ": max |Δlogit| = " + diff);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded"})
    void paddedBatchEqualsEachRowAlone(String name) {
        long[][] rows = {{5, 17, 33, 64, 100, 2, 250}, {7, 9}, {11, 300, 42, 43}};
        try (NDManager m = root.newSubManager(); Decoder model = Decoder.load(TestPaths.fixture(name), m, DataType.FLOAT32)) {
            int v = model.config.vocabSize();
            int tmax = 7;
            // left padding with a junk token id, masked out
            long[] ids = new long[rows.length * tmax];
            long[] valid = new long[rows.length * tmax];
            for (int r = 0; r < rows.length; r++) {
                int pad = tmax - rows[r].length;
                for (int j = 0; j < tmax; j++) {
                    ids[r * tmax + j] = j < pad ? 123 : rows[r][j - pad];
                    valid[r * tmax + j] = j < pad ? 0 : 1;
                }
            }
            NDArray validArr = m.create(valid, new Shape(rows.length, tmax));
            NDArray pos = validArr.cumSum(1).sub(1).maximum(0);
            float[] batched = model.logits(model.hidden(m.create(ids, new Shape(rows.length, tmax)), pos,
                    model.attentionMask(validArr, 0, tmax), null, 0)).toFloatArray();
            for (int r = 0; r < rows.length; r++) {
                float[] alone = logits(model, m, rows[r]);
                int pad = tmax - rows[r].length;
                float[] slice = java.util.Arrays.copyOfRange(batched, (r * tmax + pad) * v, (r + 1) * tmax * v);
                assertTrue(maxAbsDiff(alone, slice) < 1e-5, "row " + r + " differs when padded");
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded", "qwen2-f16-tied"})
    void incrementalDecodingWithCacheEqualsFullForward(String name) {
        long[] ids = {5, 17, 33, 64, 100, 2, 250, 7, 9, 11};
        try (NDManager m = root.newSubManager(); Decoder model = Decoder.load(TestPaths.fixture(name), m, DataType.FLOAT32)) {
            int v = model.config.vocabSize();
            float[] full = logits(model, m, ids);
            KvCache cache = new KvCache(model, m, 1, 16);
            NDArray valid = m.ones(new Shape(1, 16), DataType.INT64);
            // prefill 4 tokens, then one at a time
            int pre = 4;
            long[] first = java.util.Arrays.copyOf(ids, pre);
            NDArray h = model.hidden(m.create(first, new Shape(1, pre)), m.arange(0, pre, 1, DataType.INT64).reshape(1, pre),
                    model.attentionMask(valid.get(":, 0:" + pre), 0, pre), cache, 0);
            float[] got = new float[ids.length * v];
            System.arraycopy(model.logits(h).toFloatArray(), 0, got, 0, pre * v);
            for (int i = pre; i < ids.length; i++) {
                NDArray hi = model.hidden(m.create(new long[] {ids[i]}, new Shape(1, 1)),
                        m.create(new long[] {i}, new Shape(1, 1)),
                        model.attentionMask(valid.get(":, 0:" + (i + 1)), i, 1), cache, i);
                System.arraycopy(model.logits(hi).toFloatArray(), 0, got, i * v, v);
            }
            assertTrue(maxAbsDiff(full, got) < 1e-5, "cached decoding differs from full forward");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded"})
    void float16ComputeStaysCloseToFloat32(String name) {
        long[] ids = {5, 17, 33, 64, 100, 2, 250, 7, 9, 11};
        try (NDManager m = root.newSubManager();
             Decoder f32 = Decoder.load(TestPaths.fixture(name), m, DataType.FLOAT32);
             Decoder f16 = Decoder.load(TestPaths.fixture(name), m, DataType.FLOAT16)) {
            assertEquals(DataType.FLOAT16, f16.parameters().get("model.norm.weight").getDataType());
            double diff = maxAbsDiff(logits(f32, m, ids), logits(f16, m, ids));
            // fp16 keeps ~3 significant digits; logits here are O(5)
            assertTrue(diff < 0.05, "fp16 max |Δlogit| = " + diff);
            assertTrue(diff > 0, "fp16 path did not run in fp16");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded"})
    void bf16WeightsAreWidenedBitExactly(String name) {
        Path dir = TestPaths.fixture(name);
        var idx = SafeTensors.index(dir);
        SafeTensors.Entry e = idx.get("model.norm.weight");
        assertEquals("BF16", e.dtype());
        try (NDManager m = root.newSubManager()) {
            float[] got = SafeTensors.load(e, m, DataType.FLOAT32).toFloatArray();
            for (float f : got) {
                // every widened value has a zero low half: it came from bf16 exactly
                assertEquals(0, Float.floatToRawIntBits(f) & 0xFFFF);
            }
            float[] roundTrip = new float[got.length];
            for (int i = 0; i < got.length; i++) {
                roundTrip[i] = Float.intBitsToFloat((SafeTensors.toBf16(got[i]) & 0xFFFF) << 16);
            }
            assertArrayEquals(got, roundTrip);
        }
    }

    /**
     * Projections are stored column-major on CPU (Decoder.columnMajor); every tensor must still read,
     * save and take values back exactly as the file holds it, non-square matrices included.
     */
    @ParameterizedTest
    @ValueSource(strings = {"qwen2-bf16-sharded", "llama3-bf16-sharded"})
    void loadedWeightsReadSaveAndRestoreAsTheirFile(String name, @org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path dir = TestPaths.fixture(name);
        var file = SafeTensors.index(dir);
        try (NDManager m = root.newSubManager(); Decoder model = Decoder.load(dir, m, DataType.FLOAT32)) {
            int nonSquare = 0;
            for (var e : model.parameters().entrySet()) {
                float[] want = SafeTensors.load(file.get(e.getKey()), m, DataType.FLOAT32).toFloatArray();
                assertArrayEquals(want, e.getValue().toFloatArray(), e.getKey());
                long[] s = e.getValue().getShape().getShape();
                nonSquare += s.length == 2 && s[0] != s[1] ? 1 : 0;
            }
            assertTrue(nonSquare >= 4, "the fixture should have non-square projections");
            SafeTensors.write(tmp, model.parameters(), "F32", Long.MAX_VALUE);
            var saved = SafeTensors.index(tmp);
            for (var e : model.parameters().entrySet()) {
                assertArrayEquals(e.getValue().toFloatArray(), SafeTensors.load(saved.get(e.getKey()), m, DataType.FLOAT32).toFloatArray());
            }
            // values written back into a live parameter land where their indices say
            NDArray w = model.parameters().get("model.layers.0.mlp.down_proj.weight");
            NDArray ramp = m.arange(0f, (float) w.size()).reshape(w.getShape());
            w.set(ramp.toByteBuffer());
            assertArrayEquals(ramp.toFloatArray(), w.toFloatArray());
            float[] row0 = w.get(0).toFloatArray();
            assertEquals(1f, row0[1]);
        }
    }

    /**
     * Each layer frees its intermediates when it returns, so what a pass leaves alive does not grow with
     * depth: otherwise a prefill holds its attention scores once per layer, and a checkpointed stage
     * every recomputed layer's activations.
     */
    @org.junit.jupiter.api.Test
    void whatAPassLeavesAliveDoesNotGrowWithDepth(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        int[] live = new int[2];
        for (int i = 0; i < 2; i++) {
            int layers = 1 + 2 * i;
            Path dir = tmp.resolve("layers-" + layers);
            TinyModel.write(dir, new TinyModel.Spec("qwen2", 64, layers, 4, 2, 176, 1, "F32", Long.MAX_VALUE, false, 0.02, 0));
            try (NDManager m = root.newSubManager(); Decoder model = Decoder.load(dir, m, DataType.FLOAT32);
                 NDManager pass = m.newSubManager()) {
                NDArray valid = pass.create(new long[] {0, 0, 1, 1, 1, 1, 1, 1}, new Shape(1, 8)); // left padding: a mask
                NDArray ids = pass.create(new long[] {0, 0, 5, 6, 7, 8, 9, 10}, new Shape(1, 8));
                NDArray h = model.hidden(ids, valid.cumSum(1).sub(1).maximum(0), model.attentionMask(valid, 0, 8), null, 0);
                assertEquals(new Shape(1, 8, 64), h.getShape());
                live[i] = pass.getManagedArrays().size();
            }
        }
        assertEquals(live[0], live[1], "arrays a 1-layer and a 3-layer pass leave alive");
    }
}
