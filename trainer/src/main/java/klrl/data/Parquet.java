package klrl.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.util.Json;
import klrl.util.UserError;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.convert.GroupRecordConverter;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.LocalInputFile;
import org.apache.parquet.io.MessageColumnIO;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.schema.GroupType;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType;
import org.apache.parquet.schema.Type;

/**
 * Parquet data files (the format of Hugging Face datasets and verl's data). parquet-mr (through
 * parquet-floor, without Hadoop) assembles each record with its nesting; this class only turns the
 * assembled record into a JSON row by its schema, so nested columns (verl's {@code prompt} message
 * list, {@code reward_model} struct) arrive as the same JSON a JSONL file would hold. Lists follow the
 * format's LIST rules (3-level, and the 2-level encodings older writers used), maps become objects.
 */
final class Parquet {
    private Parquet() {}

    /** Receives the rows of a file in order, each with its number (from 1). */
    interface Sink {
        void row(JsonNode row, int n);
    }

    /** Every row of one file, in order. */
    static List<JsonNode> rows(Path file) {
        List<JsonNode> out = new ArrayList<>();
        read(file, null, (row, n) -> out.add(row), n -> { });
        return out;
    }

    /** How many rows the file's footer declares. */
    static long rowCount(Path file) {
        checkShape(file);
        try (ParquetFileReader r = ParquetFileReader.open(new LocalInputFile(file))) {
            return r.getRecordCount();
        } catch (Exception | LinkageError e) {
            throw unreadable(file, e);
        } catch (OutOfMemoryError e) {
            throw outgrown(file);
        }
    }

    /**
     * Every row of one file, in order, to {@code sink}; {@code progress} hears of every 1,024 rows read. With
     * {@code columns} (top-level names) only those columns are read (parquet-mr's projection: the other
     * column chunks are never read from disk nor decoded); each other column is in the row as null, so a
     * row lists every key its file has. Null reads every column, as does a set naming none of the file's.
     */
    static void read(Path file, java.util.Set<String> columns, Sink sink, java.util.function.LongConsumer progress) {
        checkShape(file);
        int n = 0;
        try (ParquetFileReader r = ParquetFileReader.open(new LocalInputFile(file))) {
            MessageType schema = r.getFooter().getFileMetaData().getSchema();
            List<Type> wanted = columns == null ? List.of() : schema.getFields().stream().filter(f -> columns.contains(f.getName())).toList();
            MessageType read = wanted.isEmpty() ? schema : new MessageType(schema.getName(), wanted);
            if (read != schema) {
                r.setRequestedSchema(read);
            }
            MessageColumnIO io = new ColumnIOFactory().getColumnIO(read, schema);
            PageReadStore pages;
            while ((pages = r.readNextRowGroup()) != null) {
                RecordReader<Group> rr = io.getRecordReader(pages, new GroupRecordConverter(read));
                for (long i = 0, rows = pages.getRowCount(); i < rows; i++) {
                    ObjectNode row = group(rr.read(), read);
                    if (read != schema) { // every key in the file's order, the unread ones null
                        ObjectNode all = Json.MAPPER.createObjectNode();
                        for (Type f : schema.getFields()) {
                            JsonNode v = row.get(f.getName());
                            all.set(f.getName(), v != null ? v : Json.MAPPER.nullNode());
                        }
                        row = all;
                    }
                    try {
                        sink.row(row, ++n);
                    } catch (RuntimeException e) {
                        throw new FromSink(e);
                    } catch (OutOfMemoryError e) {
                        throw new UserError(file + ":" + n + ": more rows than the Java heap holds (give the JVM more, e.g."
                                + " KLRL_JAVA_OPTS=-Xmx16g)");
                    }
                    if ((n & 1023) == 0) {
                        progress.accept(1024);
                    }
                }
            }
        } catch (UserError e) {
            throw e;
        } catch (FromSink e) {
            throw (RuntimeException) e.getCause(); // the row's own failure, not the file's
        } catch (Exception | LinkageError e) {
            throw unreadable(file, e);
        } catch (OutOfMemoryError e) {
            throw outgrown(file);
        }
        progress.accept(n & 1023);
    }

    /** What the sink threw for a row, carried past the handlers that blame the file. */
    private static final class FromSink extends RuntimeException {
        FromSink(RuntimeException cause) {
            super(cause);
        }
    }

    /** A damaged footer can declare lists far larger than the file; a row group of a large valid file can outgrow the heap. */
    private static UserError outgrown(Path file) {
        return new UserError(file + ": more than the Java heap holds while reading it (a damaged footer, or a file larger than"
                + " -Xmx allows: give the JVM more, e.g. KLRL_JAVA_OPTS=-Xmx16g)");
    }

    private static UserError unreadable(Path file, Throwable e) {
        // parquet-mr names the file by its reader object (LocalInputFile@3383649e): say the path instead
        String why = e.getMessage() != null ? Json.firstLine(e.getMessage()).replaceAll("\\S*InputFile@[0-9a-f]+", "the file")
                : e.getClass().getSimpleName();
        return new UserError(file + ": not a readable parquet file (" + why + ")");
    }

    /** The 4-byte mark a parquet file starts and ends with. */
    private static final byte[] MAGIC = {'P', 'A', 'R', '1'};

    /**
     * Refuses, in the user's words, a file that cannot be parquet at all: empty, shorter than its two
     * marks and footer length, or without the "PAR1" marks at both ends (a truncated download keeps the
     * first, another format saved as .parquet has neither).
     */
    static void checkShape(Path file) {
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file)) {
            long size = ch.size();
            if (size == 0) {
                throw new UserError(file + ": empty file, expected parquet");
            }
            if (size < 12) {
                throw new UserError(file + ": " + size + " bytes, too short to be a parquet file (at least 12: \"PAR1\", a footer length, \"PAR1\")");
            }
            java.nio.ByteBuffer head = java.nio.ByteBuffer.allocate(4), tail = java.nio.ByteBuffer.allocate(4);
            ch.read(head, 0);
            ch.read(tail, size - 4);
            boolean starts = java.util.Arrays.equals(head.array(), MAGIC), ends = java.util.Arrays.equals(tail.array(), MAGIC);
            if (!starts) {
                throw new UserError(file + ": not a parquet file (it does not begin with \"PAR1\"; another format saved as .parquet?)");
            }
            if (!ends) {
                throw new UserError(file + ": truncated parquet file (it begins with \"PAR1\" but does not end with it: an interrupted"
                        + " download or copy?)");
            }
        } catch (java.io.IOException e) {
            throw new UserError(file + ": cannot be read (" + e.getMessage() + ")");
        }
    }

    /** A struct: each field by name, absent optional fields as null. */
    private static ObjectNode group(Group g, GroupType t) {
        ObjectNode o = Json.MAPPER.createObjectNode();
        for (int i = 0; i < t.getFieldCount(); i++) {
            Type f = t.getType(i);
            int n = g.getFieldRepetitionCount(i);
            if (f.isRepetition(Type.Repetition.REPEATED)) { // a bare repeated field is a list of its values
                ArrayNode a = o.putArray(f.getName());
                for (int k = 0; k < n; k++) {
                    a.add(value(g, i, k, f));
                }
            } else {
                o.set(f.getName(), n == 0 ? Json.MAPPER.nullNode() : value(g, i, 0, f));
            }
        }
        return o;
    }

    /** The k-th value of field i of g, whose type is t. */
    private static JsonNode value(Group g, int i, int k, Type t) {
        if (t.isPrimitive()) {
            return primitive(g, i, k, t.asPrimitiveType());
        }
        GroupType gt = t.asGroupType();
        Group v = g.getGroup(i, k);
        LogicalTypeAnnotation a = gt.getLogicalTypeAnnotation();
        if (a instanceof LogicalTypeAnnotation.ListLogicalTypeAnnotation && gt.getFieldCount() == 1
                && gt.getType(0).isRepetition(Type.Repetition.REPEATED)) {
            return list(v, gt);
        }
        if ((a instanceof LogicalTypeAnnotation.MapLogicalTypeAnnotation
                || a instanceof LogicalTypeAnnotation.MapKeyValueTypeAnnotation) && gt.getFieldCount() == 1
                && gt.getType(0).isRepetition(Type.Repetition.REPEATED) && !gt.getType(0).isPrimitive()
                && gt.getType(0).asGroupType().getFieldCount() == 2) {
            return map(v, gt.getType(0).asGroupType());
        }
        return group(v, gt);
    }

    /**
     * A LIST group: its one repeated field holds the elements. Per the format's backward-compatibility
     * rules, the repeated field is itself the element when it is a primitive, a group of several
     * fields, a group whose one field is repeated, or a one-field group named {@code array} or
     * {@code <list>_tuple}; otherwise (3-level, what pyarrow and arrow-rs write) its single field is
     * the element.
     */
    private static ArrayNode list(Group v, GroupType listType) {
        ArrayNode a = Json.MAPPER.createArrayNode();
        Type rep = listType.getType(0);
        int n = v.getFieldRepetitionCount(0);
        boolean repIsElement = rep.isPrimitive() || rep.asGroupType().getFieldCount() > 1
                || rep.asGroupType().getType(0).isRepetition(Type.Repetition.REPEATED)
                || rep.getName().equals("array") || rep.getName().equals(listType.getName() + "_tuple");
        for (int k = 0; k < n; k++) {
            if (repIsElement) {
                a.add(value(v, 0, k, rep));
            } else {
                Group wrapper = v.getGroup(0, k);
                Type element = rep.asGroupType().getType(0);
                a.add(wrapper.getFieldRepetitionCount(0) == 0 ? Json.MAPPER.nullNode() : value(wrapper, 0, 0, element));
            }
        }
        return a;
    }

    /** A MAP group: key_value entries become an object keyed by the key's text. */
    private static ObjectNode map(Group v, GroupType kv) {
        ObjectNode o = Json.MAPPER.createObjectNode();
        for (int k = 0, n = v.getFieldRepetitionCount(0); k < n; k++) {
            Group e = v.getGroup(0, k);
            JsonNode key = value(e, 0, 0, kv.getType(0));
            o.set(key.asText(), e.getFieldRepetitionCount(1) == 0 ? Json.MAPPER.nullNode() : value(e, 1, 0, kv.getType(1)));
        }
        return o;
    }

    private static JsonNode primitive(Group g, int i, int k, PrimitiveType t) {
        LogicalTypeAnnotation a = t.getLogicalTypeAnnotation();
        return switch (t.getPrimitiveTypeName()) {
            case BOOLEAN -> Json.MAPPER.getNodeFactory().booleanNode(g.getBoolean(i, k));
            case INT32 -> a instanceof LogicalTypeAnnotation.IntLogicalTypeAnnotation u && !u.isSigned()
                    ? Json.MAPPER.getNodeFactory().numberNode(Integer.toUnsignedLong(g.getInteger(i, k)))
                    : a instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation d
                    ? Json.MAPPER.getNodeFactory().numberNode(java.math.BigDecimal.valueOf(g.getInteger(i, k), d.getScale()))
                    : Json.MAPPER.getNodeFactory().numberNode(g.getInteger(i, k));
            case INT64 -> a instanceof LogicalTypeAnnotation.IntLogicalTypeAnnotation u && !u.isSigned()
                    ? Json.MAPPER.getNodeFactory().numberNode(new java.math.BigInteger(Long.toUnsignedString(g.getLong(i, k))))
                    : a instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation d
                    ? Json.MAPPER.getNodeFactory().numberNode(java.math.BigDecimal.valueOf(g.getLong(i, k), d.getScale()))
                    : Json.MAPPER.getNodeFactory().numberNode(g.getLong(i, k));
            case FLOAT -> Json.MAPPER.getNodeFactory().numberNode(g.getFloat(i, k));
            case DOUBLE -> Json.MAPPER.getNodeFactory().numberNode(g.getDouble(i, k));
            case BINARY, FIXED_LEN_BYTE_ARRAY -> {
                byte[] b = g.getBinary(i, k).getBytes();
                if (a instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation d) { // pyarrow's decimal128: big-endian two's complement
                    yield Json.MAPPER.getNodeFactory().numberNode(new java.math.BigDecimal(new java.math.BigInteger(b), d.getScale()));
                }
                // text columns (STRING/ENUM/JSON, or unannotated bytes that are valid UTF-8) as text; other bytes as base64
                boolean text = a == null || a instanceof LogicalTypeAnnotation.StringLogicalTypeAnnotation
                        || a instanceof LogicalTypeAnnotation.EnumLogicalTypeAnnotation
                        || a instanceof LogicalTypeAnnotation.JsonLogicalTypeAnnotation;
                String s = text ? utf8(b) : null;
                // bytes stay bytes: a field holding them is refused by name, never read as text
                yield s != null ? Json.MAPPER.getNodeFactory().textNode(s) : Json.MAPPER.getNodeFactory().binaryNode(b);
            }
            default -> Json.MAPPER.getNodeFactory().textNode(g.getValueToString(i, k));
        };
    }

    /** The bytes as UTF-8 text, or null when they are not valid UTF-8. */
    static String utf8(byte[] b) {
        // the JDK's own decoding is several times faster than a CharsetDecoder, but replaces what is not UTF-8 with
        // U+FFFD: text holding U+FFFD is decoded again, strictly, which tells a real U+FFFD from bytes that are not text
        String s = new String(b, StandardCharsets.UTF_8);
        if (s.indexOf('\uFFFD') < 0) {
            return s;
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(b)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            return null;
        }
    }
}
