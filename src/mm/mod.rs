//! Memory management: the memory file, address spaces and their VMAs,
//! copy-in/out, and ELF loading.

pub mod address_space;
pub mod elf;
pub mod memfile;

pub use address_space::{AddressSpace, Backing, Vma, VmaName};
pub use memfile::{MemRange, MemoryFile, PAGE_SIZE, page_down, page_up};
