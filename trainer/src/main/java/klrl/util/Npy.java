package klrl.util;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Writes float32 arrays as NumPy .npy (format 1.0), readable by numpy.load. */
public final class Npy {
    private Npy() {}

    public static void writeFloat32(Path file, float[] data, long... shape) throws IOException {
        try (Writer w = new Writer(file, shape)) {
            w.write(data);
            w.commit();
        }
    }

    /**
     * A float32 .npy written piece by piece in row-major order (an array too large to hold whole): to a
     * temporary file beside {@code file}, moved into place by {@link #commit} once every value is in;
     * closed without it (a failure), the temporary file goes and {@code file} is untouched.
     */
    public static final class Writer implements AutoCloseable {
        private final Path file, tmp;
        private final OutputStream os;
        private final long expected;
        private long written;
        private boolean committed;

        public Writer(Path file, long... shape) throws IOException {
            this.file = file;
            this.tmp = file.resolveSibling(file.getFileName() + ".tmp");
            long n = 1;
            StringBuilder sh = new StringBuilder("(");
            for (long d : shape) {
                sh.append(d).append(", ");
                n *= d;
            }
            if (shape.length > 1) {
                sh.setLength(sh.length() - 2);
            } else if (shape.length == 1) {
                sh.setLength(sh.length() - 1);
            }
            sh.append(")");
            this.expected = n;
            String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + sh + ", }";
            int total = 10 + dict.length() + 1;
            int pad = (64 - total % 64) % 64;
            String header = dict + " ".repeat(pad) + "\n";
            this.os = new java.io.BufferedOutputStream(Files.newOutputStream(tmp));
            os.write(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0});
            os.write(ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort((short) header.length()).array());
            os.write(header.getBytes(StandardCharsets.US_ASCII));
        }

        /** The next values in row-major order. */
        public void write(float[] data) throws IOException {
            ByteBuffer bb = ByteBuffer.allocate(data.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            bb.asFloatBuffer().put(data);
            os.write(bb.array());
            written += data.length;
        }

        /** Moves the file into place; every value of the shape must have been written. */
        public void commit() throws IOException {
            if (written != expected) {
                throw new IllegalStateException(written + " values written of " + expected);
            }
            os.close();
            Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            committed = true;
        }

        @Override
        public void close() throws IOException {
            if (!committed) {
                os.close();
                Files.deleteIfExists(tmp);
            }
        }
    }
}
