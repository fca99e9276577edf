struct Counter {
    count: u32,
}

impl Counter {
    fn increment(&mut self) {
        if self.count < u32::MAX {
            self.count += 1;
    }

    fn get(&self) -> u32 {
        self.count
    }
}
