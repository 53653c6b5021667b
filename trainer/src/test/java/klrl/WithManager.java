package klrl;

import ai.djl.ndarray.NDManager;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/** Base for tests of small NDArray functions: a fresh manager per test, closed after it. */
public abstract class WithManager {
    protected NDManager m;

    @BeforeEach
    void openManager() {
        m = NDManager.newBaseManager("PyTorch");
    }

    @AfterEach
    void closeManager() {
        m.close();
    }
}
