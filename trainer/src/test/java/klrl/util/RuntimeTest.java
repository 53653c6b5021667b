package klrl.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class RuntimeTest {
    @Test
    void tf32FollowsLibtorchsReadingOfItsVariable() {
        assertTrue(Runtime.tf32("1"));
        assertFalse(Runtime.tf32("0"));
        assertFalse(Runtime.tf32(null));
        // libtorch ignores these (TF32 stays off): reporting TF32 for them would be wrong, so they are refused
        for (String v : new String[] {"true", "on", "yes", ""}) {
            UserError e = assertThrows(UserError.class, () -> Runtime.tf32(v));
            assertEquals("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE must be 0 or 1 (libtorch ignores any other value), got '" + v + "'",
                    e.getMessage());
        }
    }
}
