package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * Reads and writes Hugging Face safetensors (one file or shards with model.safetensors.index.json).
 *
 * <p>Reading memory-maps each tensor (DJL's own reader stops at 2 GiB a file) and copies it into
 * torch-owned memory in row chunks, so the mapping is never aliased by a live tensor and no Java
 * buffer exceeds 2 GiB. BF16 is widened in Java: DJL 0.33's JNI aborts the JVM on any BF16 tensor.
 */
public final class SafeTensors {

    /** Where one tensor lives on disk. */
    public record Entry(String name, Path file, String dtype, long[] shape, long offset, long length) {}

    private static final long CHUNK_ELEMS = 16L << 20;

    private SafeTensors() {}

    /** Lists every tensor of a model folder, refusing pickled checkpoints. */
    public static Map<String, Entry> index(Path dir) {
        Path single = dir.resolve("model.safetensors");
        Path idx = dir.resolve("model.safetensors.index.json");
        Map<String, Entry> out = new LinkedHashMap<>();
        if (Files.isRegularFile(idx)) {
            JsonNode map = Json.read(idx).get("weight_map");
            if (map == null || !map.isObject()) {
                throw new UserError(idx + ": field 'weight_map' is missing or not an object");
            }
            var files = new java.util.TreeSet<String>();
            map.fields().forEachRemaining(e -> files.add(e.getValue().asText()));
            for (String f : files) {
                Path shard = dir.resolve(f);
                if (!Files.isRegularFile(shard)) {
                    throw new UserError(idx + ": shard '" + f + "' named in weight_map does not exist");
                }
                out.putAll(readHeader(shard));
            }
            map.fields().forEachRemaining(e -> {
                Entry en = out.get(e.getKey());
                if (en == null || !en.file().getFileName().toString().equals(e.getValue().asText())) {
                    throw new UserError(idx + ": tensor '" + e.getKey() + "' is not in shard " + e.getValue().asText());
                }
            });
        } else if (Files.isRegularFile(single)) {
            out.putAll(readHeader(single));
        } else {
            boolean pickled = Files.isRegularFile(dir.resolve("pytorch_model.bin"))
                    || Files.isRegularFile(dir.resolve("pytorch_model.bin.index.json"));
            throw new UserError(dir + (pickled
                    ? ": only pickled pytorch_model.bin weights found; they can run arbitrary code and are refused."
                            + " Convert them to safetensors first"
                    : ": no model.safetensors or model.safetensors.index.json found"));
        }
        return out;
    }

    public static Map<String, Entry> readHeader(Path file) {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            if (ch.read(lenBuf, 0) != 8) {
                throw new UserError(file + ": not a safetensors file (shorter than 8 bytes)");
            }
            long n = lenBuf.getLong(0);
            if (n <= 0 || n > 100_000_000 || 8 + n > ch.size()) {
                throw new UserError(file + ": not a safetensors file (bad header length " + n + ")");
            }
            ByteBuffer hb = ByteBuffer.allocate((int) n);
            ch.read(hb, 8);
            JsonNode h;
            try {
                h = Json.MAPPER.readTree(new String(hb.array(), StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new UserError(file + ": safetensors header is not valid JSON");
            }
            long dataStart = 8 + n;
            Map<String, Entry> out = new LinkedHashMap<>();
            if (h == null || !h.isObject()) {
                throw new UserError(file + ": safetensors header is not a JSON object");
            }
            var it = h.fields();
            while (it.hasNext()) {
                var e = it.next();
                if (e.getKey().equals("__metadata__")) {
                    continue;
                }
                JsonNode t = e.getValue();
                JsonNode shp = t.path("shape"), off = t.path("data_offsets"), dtn = t.path("dtype");
                if (!dtn.isTextual() || !shp.isArray() || !off.isArray() || off.size() != 2 || !off.get(0).canConvertToLong()
                        || !off.get(1).canConvertToLong()) {
                    throw new UserError(file + ": tensor '" + e.getKey() + "' needs \"dtype\" (text), \"shape\" (a list)"
                            + " and \"data_offsets\" ([begin, end]) in the safetensors header");
                }
                long[] shape = new long[shp.size()];
                long numel = 1;
                for (int i = 0; i < shape.length; i++) {
                    JsonNode d = shp.get(i);
                    shape[i] = d.canConvertToLong() && d.isIntegralNumber() ? d.asLong() : -1;
                    if (shape[i] < 0) {
                        throw new UserError(file + ": tensor '" + e.getKey() + "' has shape " + shp + "; expected non-negative integers");
                    }
                    numel = numel > 0 && shape[i] > Long.MAX_VALUE / 8 / numel ? Long.MAX_VALUE / 8 : numel * shape[i];
                }
                long begin = off.get(0).asLong(), end = off.get(1).asLong();
                String dt = dtn.asText();
                if (begin < 0 || end < begin || end - begin != numel * bytesOf(dt, file, e.getKey()) || dataStart + end > ch.size()) {
                    throw new UserError(file + ": tensor '" + e.getKey() + "' has a byte range that does not match its shape "
                            + java.util.Arrays.toString(shape) + " and dtype " + dt + " (file truncated?)");
                }
                out.put(e.getKey(), new Entry(e.getKey(), file, dt, shape, dataStart + begin, end - begin));
            }
            return out;
        } catch (IOException e) {
            throw new UserError(file + ": cannot read (" + e.getMessage() + ")");
        }
    }

    static int bytesOf(String dtype, Path file, String name) {
        return switch (dtype) {
            case "F32", "I32" -> 4;
            case "F16", "BF16" -> 2;
            case "I64", "F64" -> 8;
            default -> throw new UserError(file + ": tensor '" + name + "' has dtype " + dtype
                    + "; expected BF16, F16 or F32");
        };
    }

    /** Loads one tensor as {@code target} (FLOAT32 or FLOAT16), owned by {@code manager}. */
    public static NDArray load(Entry e, NDManager manager, DataType target) {
        long rows = e.shape().length == 0 ? 1 : e.shape()[0];
        long rowElems = rows == 0 ? 0 : numel(e.shape()) / rows;
        long chunkRows = Math.max(1, CHUNK_ELEMS / Math.max(1, rowElems));
        int eb = bytesOf(e.dtype(), e.file(), e.name());
        List<NDArray> parts = new ArrayList<>();
        try (FileChannel ch = FileChannel.open(e.file(), StandardOpenOption.READ)) {
            for (long r0 = 0; r0 < rows; r0 += chunkRows) {
                long nr = Math.min(chunkRows, rows - r0);
                long elems = nr * rowElems;
                MappedByteBuffer mb = ch.map(FileChannel.MapMode.READ_ONLY, e.offset() + r0 * rowElems * eb, elems * eb);
                mb.order(ByteOrder.LITTLE_ENDIAN);
                long[] shp = e.shape().clone();
                if (shp.length > 0) {
                    shp[0] = nr;
                }
                parts.add(fromBuffer(mb, e.dtype(), new Shape(shp), elems, manager, target));
            }
        } catch (IOException ex) {
            throw new UserError(e.file() + ": cannot read tensor '" + e.name() + "' (" + ex.getMessage() + ")");
        }
        if (parts.size() == 1) {
            return parts.get(0);
        }
        NDArray all = NDArrays.concat(new NDList(parts), 0);
        parts.forEach(NDArray::close);
        return all;
    }

    private static NDArray fromBuffer(MappedByteBuffer mb, String dtype, Shape shape, long elems,
                                      NDManager manager, DataType target) {
        NDArray alias;
        if (dtype.equals("BF16")) {
            // Widen bf16 -> fp32 bit-exactly: a bf16 is the top half of an fp32.
            ByteBuffer wide = ByteBuffer.allocateDirect((int) (elems * 4)).order(ByteOrder.nativeOrder());
            for (long i = 0; i < elems; i++) {
                wide.putInt((mb.getShort() & 0xFFFF) << 16);
            }
            wide.rewind();
            alias = manager.create(wide, shape, DataType.FLOAT32);
        } else {
            DataType dt = switch (dtype) {
                case "F32" -> DataType.FLOAT32;
                case "F16" -> DataType.FLOAT16;
                case "F64" -> DataType.FLOAT64;
                case "I64" -> DataType.INT64;
                default -> DataType.INT32;
            };
            alias = manager.create(mb, shape, dt);
        }
        // toType/duplicate copy into torch-owned memory, so the mapping can go.
        NDArray owned = alias.getDataType() == target ? alias.duplicate() : alias.toType(target, true);
        alias.close();
        return owned;
    }

    static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    // ---------------------------------------------------------------------------------------------
    // Writing

    /** Rounds fp32 to bf16 with round-to-nearest-even, as torch does. */
    public static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) {
            return (short) 0x7FC0;
        }
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7FFF + lsb) >>> 16);
    }

    /**
     * Writes tensors as safetensors in {@code dtype} ("F32", "F16" or "BF16"), in one file or in
     * shards of at most {@code maxShardBytes} with an index. Every file is written to a temp name and
     * renamed, so a crash never leaves a half-written checkpoint under the final name.
     */
    public static void write(Path dir, Map<String, NDArray> tensors, String dtype, long maxShardBytes) throws IOException {
        Files.createDirectories(dir);
        int eb = bytesOf(dtype, dir, "*");
        List<List<String>> shards = new ArrayList<>();
        List<String> cur = new ArrayList<>();
        long curBytes = 0;
        for (var e : tensors.entrySet()) {
            long b = e.getValue().size() * eb;
            if (!cur.isEmpty() && curBytes + b > maxShardBytes) {
                shards.add(cur);
                cur = new ArrayList<>();
                curBytes = 0;
            }
            cur.add(e.getKey());
            curBytes += b;
        }
        shards.add(cur);
        Map<String, String> weightMap = new TreeMap<>();
        for (int s = 0; s < shards.size(); s++) {
            String name = shards.size() == 1 ? "model.safetensors"
                    : String.format("model-%05d-of-%05d.safetensors", s + 1, shards.size());
            writeFile(dir.resolve(name), shards.get(s), tensors, dtype);
            for (String t : shards.get(s)) {
                weightMap.put(t, name);
            }
        }
        Path idx = dir.resolve("model.safetensors.index.json");
        if (shards.size() > 1) {
            ObjectNode root = Json.MAPPER.createObjectNode();
            long total = 0;
            for (NDArray a : tensors.values()) {
                total += a.size() * eb;
            }
            root.putObject("metadata").put("total_size", total);
            ObjectNode wm = root.putObject("weight_map");
            weightMap.forEach(wm::put);
            Json.writeAtomically(idx, Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(root));
            Files.deleteIfExists(dir.resolve("model.safetensors"));
        } else {
            Files.deleteIfExists(idx);
        }
    }

    private static void writeFile(Path file, List<String> names, Map<String, NDArray> tensors, String dtype) throws IOException {
        int eb = bytesOf(dtype, file, "*");
        ObjectNode header = Json.MAPPER.createObjectNode();
        header.putObject("__metadata__").put("format", "pt");
        long off = 0;
        for (String n : names) {
            NDArray a = tensors.get(n);
            ObjectNode t = header.putObject(n);
            t.put("dtype", dtype);
            var shp = t.putArray("shape");
            for (long d : a.getShape().getShape()) {
                shp.add(d);
            }
            long len = a.size() * eb;
            t.putArray("data_offsets").add(off).add(off + len);
            off += len;
        }
        byte[] hjson = Json.MAPPER.writeValueAsBytes(header);
        int pad = (8 - hjson.length % 8) % 8;
        byte[] hbytes = new byte[hjson.length + pad];
        System.arraycopy(hjson, 0, hbytes, 0, hjson.length);
        java.util.Arrays.fill(hbytes, hjson.length, hbytes.length, (byte) ' ');
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (OutputStream os = new java.io.BufferedOutputStream(Files.newOutputStream(tmp), 1 << 20)) {
            ByteBuffer lb = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(hbytes.length);
            os.write(lb.array());
            os.write(hbytes);
            for (String n : names) {
                NDArray a = tensors.get(n);
                ByteBuffer bb;
                if (dtype.equals("BF16")) {
                    float[] f = a.getDataType() == DataType.FLOAT32 ? a.toFloatArray() : toFloats(a);
                    bb = ByteBuffer.allocate(f.length * 2).order(ByteOrder.LITTLE_ENDIAN);
                    for (float v : f) {
                        bb.putShort(toBf16(v));
                    }
                } else {
                    DataType dt = dtype.equals("F32") ? DataType.FLOAT32 : DataType.FLOAT16;
                    try (NDArray c = a.toType(dt, true)) {
                        ByteBuffer nb = c.toByteBuffer().order(ByteOrder.nativeOrder());
                        bb = ByteBuffer.allocate(nb.remaining()).order(ByteOrder.LITTLE_ENDIAN);
                        if (ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN) {
                            bb.put(nb);
                        } else {
                            throw new IllegalStateException("big-endian hosts are not supported");
                        }
                    }
                }
                os.write(bb.array());
            }
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static float[] toFloats(NDArray a) {
        try (NDArray f = a.toType(DataType.FLOAT32, true)) {
            return f.toFloatArray();
        }
    }

    /** Copies saved values into live tensors, checking names and shapes. */
    public static void copyInto(Map<String, NDArray> live, Map<String, NDArray> saved, String where) {
        for (var e : live.entrySet()) {
            NDArray src = saved.get(e.getKey());
            if (src == null || !src.getShape().equals(e.getValue().getShape())) {
                throw new UserError(where + ": tensor '" + e.getKey() + "' is missing or has the wrong shape");
            }
            try (NDArray c = src.toType(e.getValue().getDataType(), true).toDevice(e.getValue().getDevice(), false)) {
                // an indexed copy writes into the live tensor's own memory layout (Decoder.columnMajor);
                // set(ByteBuffer) gives it a fresh row-major one: the same values, but other matmul
                // kernels and so a resumed run that differs from the uninterrupted one in the last bits
                e.getValue().set(new ai.djl.ndarray.index.NDIndex(":"), c);
            }
        }
    }
}
